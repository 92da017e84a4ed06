"""Platform API auth (spec/rpc.md §7): none, api_key and jwt, with a JWT without `exp` refused."""

from __future__ import annotations

import time
import warnings
from typing import Any

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from anchorpay.settings import ConfigError, load_settings
from support.app import ClientFactory, SettingsFactory, deposit_body

FORBIDDEN = '{\n  "error": "forbidden"\n}'
API_KEY = "my-api-key-for-the-business-server"
JWT_SECRET = "a-jwt-secret-of-at-least-32-bytes-long!"
RPC = [{"jsonrpc": "2.0", "method": "get_transactions", "id": 1}]


def token(secret: str = JWT_SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now, "exp": now + 30, **claims}
    with warnings.catch_warnings():  # a short key for HS384 is the point of one case
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm)


def assert_forbidden(response: Any) -> None:
    assert response.status_code == 403
    assert response.text == FORBIDDEN
    assert response.headers["content-type"] == "application/json"


async def test_none_mode_is_open(client_factory: ClientFactory) -> None:
    async with client_factory() as client:
        assert (await client.post("/", json=RPC)).status_code == 200


async def test_api_key(client_factory: ClientFactory, settings_factory: SettingsFactory) -> None:
    settings = settings_factory(
        platform_server_auth_type="api_key", secret_platform_api_auth_secret=API_KEY
    )
    async with client_factory(settings) as client:
        good = await client.post("/", json=RPC, headers={"X-Api-Key": API_KEY})
        assert good.status_code == 200 and "result" in good.json()[0]
        assert_forbidden(await client.post("/", json=RPC, headers={"X-Api-Key": API_KEY + "x"}))
        assert_forbidden(await client.post("/", json=RPC, headers={"X-Api-Key": API_KEY.upper()}))
        assert_forbidden(await client.post("/", json=RPC, headers={"X-Api-Key": f" {API_KEY}"}))
        assert_forbidden(await client.post("/", json=RPC))
        assert_forbidden(await client.post("/transactions", json=deposit_body()))
        assert_forbidden(await client.get("/transactions"))
        assert_forbidden(await client.get("/transactions/x"))
        assert_forbidden(await client.get("/payouts"))
        created = await client.post(
            "/transactions", json=deposit_body(), headers={"x-api-key": API_KEY}
        )
        assert created.status_code == 201
        # open: health and CORS preflight
        assert (await client.get("/health")).status_code == 200
        assert (await client.options("/")).status_code != 403


async def test_non_ascii_api_key_header_is_refused_cleanly(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(
        platform_server_auth_type="api_key", secret_platform_api_auth_secret=API_KEY
    )
    async with client_factory(settings) as client:
        for raw in (
            "é".encode() + API_KEY.encode(),
            API_KEY.encode()[:-1] + b"\xff",
            API_KEY.encode("latin-1") + b"\x80",
            b"\xe2\x82\xac" * 12,
        ):
            assert_forbidden(await client.post("/", json=RPC, headers={"X-Api-Key": raw}))  # type: ignore[dict-item]
        ok = await client.post("/", json=RPC, headers={"X-Api-Key": API_KEY.encode()})  # type: ignore[dict-item]
        assert ok.status_code == 200


async def test_api_key_custom_header(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(
        platform_server_auth_type="api_key",
        secret_platform_api_auth_secret=API_KEY,
        platform_api_key_header="X-Business-Key",
    )
    async with client_factory(settings) as client:
        assert_forbidden(await client.post("/", json=RPC, headers={"X-Api-Key": API_KEY}))
        ok = await client.post("/", json=RPC, headers={"X-Business-Key": API_KEY})
        assert ok.status_code == 200


@pytest.fixture
def jwt_settings(settings_factory: SettingsFactory) -> Any:
    return settings_factory(
        platform_server_auth_type="jwt", secret_platform_api_auth_secret=JWT_SECRET
    )


async def test_jwt_good_token(client_factory: ClientFactory, jwt_settings: Any) -> None:
    async with client_factory(jwt_settings) as client:
        response = await client.post("/", json=RPC, headers={"Authorization": f"Bearer {token()}"})
        assert response.status_code == 200 and "result" in response.json()[0]
        # claims the reference does not check are not checked
        extra = token(iss="someone", aud="anyone", sub="x", jti="1", iat=int(time.time()) + 999)
        ok = await client.post("/", json=RPC, headers={"Authorization": f"Bearer {extra}"})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic abc",
        f"Token {token()}",
        f"Bearer {token(exp=int(time.time()) - 1)}",  # expired
        f"Bearer {token(exp=None)}",  # no exp: refused (the reference would accept it)
        f"Bearer {token(nbf=int(time.time()) + 60)}",  # not yet valid
        f"Bearer {token(secret=JWT_SECRET + 'other')}",  # wrong signature
        f"Bearer {token(algorithm='HS384')}",  # a 39-byte key cannot verify HS384
        f"Bearer {jwt.encode({'exp': int(time.time()) + 30}, None, 'none')}",  # unsigned
        "Bearer not.a.jwt",
        # exp, nbf and iat must be JSON numbers (PyJWT alone accepts a numeric string)
        f"Bearer {token(exp=str(int(time.time()) + 60))}",
        f"Bearer {token(nbf=str(int(time.time()) - 60))}",
        f"Bearer {token(iat='yesterday')}",
        f"Bearer {token(iat=True)}",
        f"Bearer {token(exp={'at': 1})}",
    ],
)
async def test_jwt_refused(client_factory: ClientFactory, jwt_settings: Any, header: Any) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with client_factory(jwt_settings) as client:
        assert_forbidden(await client.post("/", json=RPC, headers=headers))


async def test_jwt_long_secret_allows_hs512(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    secret = "hs512-secret-" + "0123456789abcdef" * 3 + "xyz"
    settings = settings_factory(
        platform_server_auth_type="jwt",
        secret_platform_api_auth_secret=secret,
        platform_api_jwt_header="X-Platform-Token",
    )
    async with client_factory(settings) as client:
        good = f"Bearer {token(secret=secret, algorithm='HS512')}"
        assert (
            await client.post("/", json=RPC, headers={"X-Platform-Token": good})
        ).status_code == 200
        assert_forbidden(await client.post("/", json=RPC, headers={"Authorization": good}))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "jwt", "SECRET_PLATFORM_API_AUTH_SECRET": "short"},
            "SECRET_PLATFORM_API_AUTH_SECRET is too weak for jwt: it must be at least 32 bytes",
        ),
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "api_key"},
            "SECRET_PLATFORM_API_AUTH_SECRET is required when PLATFORM_SERVER_AUTH_TYPE=api_key",
        ),
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "jwt", "SECRET_PLATFORM_API_AUTH_SECRET": ""},
            "SECRET_PLATFORM_API_AUTH_SECRET is required when PLATFORM_SERVER_AUTH_TYPE=jwt",
        ),
    ],
)
def test_bad_auth_configuration_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, env: dict[str, str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == message


async def test_sandbox_and_health_stay_open_with_auth_off(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(stellar_network="sandbox", custody_type="none")
    async with client_factory(settings) as client:
        assert (await client.get("/sandbox/distribution")).status_code == 200
        assert (await client.post("/sandbox/accounts", json={"xlm": "10"})).status_code == 201
        assert (await client.get("/health")).status_code == 200


# Every sandbox route that changes the network or reveals a secret, with a body it accepts.
SANDBOX_GUARDED: list[tuple[str, str, Any, int]] = [
    ("POST", "/sandbox/accounts", {"xlm": "10"}, 201),
    ("GET", "/sandbox/distribution", None, 200),
    ("POST", "/sandbox/close_ledger", None, 200),
    ("POST", "/sandbox/faults", {"kind": "drop_next_submission"}, 204),
    ("DELETE", "/sandbox/faults", None, 204),
    ("POST", "/sandbox/fireblocks/faults", {"kind": "rate_limited"}, 204),
    ("DELETE", "/sandbox/fireblocks/faults", None, 204),
    ("POST", "/sandbox/fireblocks/settings", {"webhook_url": "http://127.0.0.1:9/x"}, 200),
    ("POST", "/sandbox/fireblocks/api_keys", {"api_key": "k", "public_key_pem": "no"}, 400),
]


async def test_sandbox_routes_that_change_or_reveal_need_the_api_credentials(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(
        stellar_network="sandbox",
        custody_type="fireblocks",
        platform_server_auth_type="api_key",
        secret_platform_api_auth_secret=API_KEY,
    )
    async with client_factory(settings) as client:
        sandbox = client.app.state.sandbox
        fb = client.app.state.sandbox_fireblocks
        accounts = len(sandbox.ledger.accounts)
        sequence = sandbox.ledger.latest.sequence
        before = (sandbox.faults.describe(), fb.faults.describe(), fb.webhook_url)
        for method, path, body, _ in SANDBOX_GUARDED:
            refused = await client.request(method, path, json=body)
            assert_forbidden(refused)
            wrong = await client.request(method, path, json=body, headers={"X-Api-Key": "x" * 40})
            assert_forbidden(wrong)
        # nothing changed, nothing revealed
        assert len(sandbox.ledger.accounts) == accounts
        assert sandbox.ledger.latest.sequence == sequence
        assert (sandbox.faults.describe(), fb.faults.describe(), fb.webhook_url) == before
        trust = await client.post(
            f"/sandbox/accounts/{sandbox.distribution_account}/trustlines", json={}
        )
        assert_forbidden(trust)
        for method, path, body, status in SANDBOX_GUARDED:
            answer = await client.request(method, path, json=body, headers={"X-Api-Key": API_KEY})
            assert answer.status_code == status, (method, path, answer.text)
        # open as on a real network: Horizon, the Fireblocks API (its own JWT: 401, not 403),
        # the webhook keys and reads that reveal no secret
        root = await client.get("/sandbox/horizon/")
        assert root.status_code == 200 and "_links" in root.json()
        account = await client.get(f"/sandbox/horizon/accounts/{sandbox.distribution_account}")
        assert account.status_code == 200
        assert (await client.get("/sandbox/fireblocks/v1/transactions")).status_code == 401
        jwks = await client.get("/sandbox/fireblocks/.well-known/jwks.json")
        assert jwks.status_code == 200 and "keys" in jwks.json()
        assert (await client.get("/sandbox/stats")).status_code == 200
        assert (await client.get("/sandbox/fireblocks/state")).status_code == 200
        assert (await client.get("/sandbox/fireblocks/webhooks")).status_code == 200
        assert (await client.get("/health")).status_code == 200
        assert_forbidden(await client.post("/", json=RPC))
