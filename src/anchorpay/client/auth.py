"""The platform API's authentication modes, seen from the client (spec/rpc.md §7)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt


@dataclass(frozen=True, slots=True)
class ApiKey:
    """`PLATFORM_SERVER_AUTH_TYPE=api_key`: the secret, verbatim, in a header."""

    secret: str
    header: str = "X-Api-Key"

    def headers(self) -> dict[str, str]:
        return {self.header: self.secret}

    def __repr__(self) -> str:  # never show the secret
        return f"ApiKey(header={self.header!r})"


@dataclass(frozen=True, slots=True)
class Jwt:
    """`PLATFORM_SERVER_AUTH_TYPE=jwt`: a fresh HS256 token per request, `iat` now and `exp`
    `lifetime_s` later (30 s, as the Anchor Platform mints them)."""

    secret: str
    header: str = "Authorization"
    lifetime_s: int = 30

    def headers(self) -> dict[str, str]:
        now = int(time.time())
        token = jwt.encode({"iat": now, "exp": now + self.lifetime_s}, self.secret, "HS256")
        return {self.header: f"Bearer {token}"}

    def __repr__(self) -> str:
        return f"Jwt(header={self.header!r}, lifetime_s={self.lifetime_s})"


Auth = ApiKey | Jwt
