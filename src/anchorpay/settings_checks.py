"""The checks behind `settings.py`: each returns or raises one line a person can act on, and
none quotes a secret's value (for a secret it says what is wrong: too short, not a seed, a
key where a path belongs), and `one_line` turns a validation error of the settings model
into that line. Pure functions, no I/O but importing a database driver to see it is there."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from stellar_sdk import StrKey

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# DATABASE_URL schemes: the async driver each needs and the extra that installs it.
DATABASE_DRIVERS = {
    "sqlite+aiosqlite": ("aiosqlite", None),
    "postgresql+asyncpg": ("asyncpg", "postgres"),
}
MIN_SECRET_BYTES = 32
ASSET_KEYS = (
    "id",
    "significant_decimals",
    "distribution_account",
    "deposit_enabled",
    "withdraw_enabled",
)
_ASSET_CODE = re.compile(r"[A-Za-z0-9]{1,12}")
_ISO4217 = re.compile(r"[A-Z]{3}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class CheckError(ValueError):
    """One line, safe to print."""


def unknown_keys(
    keys: Iterable[str], known: Collection[str], where: str, what: str = "a setting"
) -> None:
    """Refuse a key that is not `known`, suggesting the closest one (a typo would otherwise be
    ignored silently and the default used). Only the key is quoted, never its value."""
    lookup = {k.upper(): k for k in known}
    for key in keys:
        if key.upper() in lookup:
            continue
        close = difflib.get_close_matches(key.upper(), list(lookup), n=1, cutoff=0.75)
        if close:
            name = close[0].lower() if key.islower() else close[0].upper()
            hint = f"; did you mean {name}?"
        elif what == "a setting":
            hint = " (dev.env.example lists every one)"
        else:
            hint = f" (known: {', '.join(known)})"
        raise CheckError(f"{where}: {key} is not {what}{hint}")


def database_url(url: str) -> None:
    """A URL SQLAlchemy can parse, with a supported async driver that is installed. The URL
    itself is never quoted: it may carry a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise CheckError(
            "DATABASE_URL is not a database URL: use sqlite+aiosqlite:///path/to/file.db "
            "or postgresql+asyncpg://user:password@host:5432/database"
        ) from None
    scheme = parsed.drivername
    if scheme not in DATABASE_DRIVERS:
        allowed = " or ".join(f"{s}://" for s in DATABASE_DRIVERS)
        raise CheckError(f"DATABASE_URL must start with {allowed} (got {scheme}://)")
    module, extra = DATABASE_DRIVERS[scheme]
    try:
        importlib.import_module(module)  # it is needed at once anyway
    except ImportError:
        install = f"pip install 'anchorpay[{extra}]'" if extra else f"pip install {module}"
        raise CheckError(
            f"DATABASE_URL uses {scheme} but {module} is not installed: {install}"
        ) from None
    if scheme.startswith("postgresql") and not parsed.database:
        raise CheckError("DATABASE_URL names no database (postgresql+asyncpg://…/database)")


def log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise CheckError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (got {value!r})")
    return level


def http_url(name: str, value: str | None) -> None:
    if value is None:
        return
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", value):
        raise CheckError(f"{name} must be an http:// or https:// URL (got {value!r})")


def header_name(name: str, value: str) -> None:
    if not _HEADER_NAME.fullmatch(value):
        raise CheckError(f"{name} must be an HTTP header name such as X-Api-Key (got {value!r})")


def secret_seed(name: str, value: str) -> None:
    if not StrKey.is_valid_ed25519_secret_seed(value.strip()):
        raise CheckError(
            f"{name} is not a valid Stellar secret seed (56 characters starting with S)"
        )


def channel_seeds(name: str, value: str) -> None:
    """Comma-separated seeds, blanks ignored; the entry is named by its position."""
    entries = [s.strip() for s in value.split(",") if s.strip()]
    for n, entry in enumerate(entries, 1):
        secret_seed(f"{name} (entry {n})", entry)
    if len(set(entries)) != len(entries):
        raise CheckError(f"{name} lists the same seed twice")


def key_file_path(name: str, value: Any) -> None:
    """A path, not the PEM text pasted where the path belongs (which every later message
    would quote as "the path")."""
    text = str(value)
    if "-----BEGIN" in text or "\n" in text or len(text) > 1024:
        raise CheckError(
            f"{name} must be the path of a PEM file, not the key itself: write the key to a "
            "file and give its path"
        )


def auth_secret(kind: str, secret: str) -> None:
    """API keys and JWT secrets: at least 32 bytes, not one character repeated, no whitespace;
    an API key travels in a header, so printable ASCII only."""
    name = "SECRET_PLATFORM_API_AUTH_SECRET"
    raw = secret.encode("utf-8", "surrogatepass")
    if len(raw) < MIN_SECRET_BYTES:
        raise CheckError(f"{name} is too weak for {kind}: it must be at least 32 bytes")
    if len(set(secret)) == 1:
        raise CheckError(f"{name} is too weak for {kind}: it is one character repeated")
    if any(c.isspace() for c in secret):
        raise CheckError(f"{name} must not contain whitespace")
    if kind == "api_key" and not all(0x21 <= b <= 0x7E for b in raw):
        raise CheckError(f"{name} must be printable ASCII for api_key (it is an HTTP header)")


def stellar_account(where: str, value: Any) -> None:
    if not isinstance(value, str) or not StrKey.is_valid_ed25519_public_key(value):
        raise CheckError(f"{where} must be a Stellar account id (G…, 56 characters)")


def asset_id(where: str, value: Any) -> str:
    """A SEP-38 id: `stellar:native`, `stellar:CODE:ISSUER` or `iso4217:CCY`."""
    text = value.strip() if isinstance(value, str) else ""
    parts = text.split(":")
    ok = (
        text == "stellar:native"
        or (
            len(parts) == 3
            and parts[0] == "stellar"
            and _ASSET_CODE.fullmatch(parts[1]) is not None
            and StrKey.is_valid_ed25519_public_key(parts[2])
        )
        or (len(parts) == 2 and parts[0] == "iso4217" and _ISO4217.fullmatch(parts[1]) is not None)
    )
    if not ok:
        raise CheckError(
            f"{where}: asset id {value!r} is not a SEP-38 id (stellar:native, "
            "stellar:CODE:ISSUER with a 1-12 letter code and a G… issuer, or iso4217:CCY)"
        )
    return text


def asset_entry(where: str, entry: Any) -> None:
    """Keys, decimals (0 to 7: Stellar amounts have 7), booleans and account of one entry."""
    if not isinstance(entry, dict):
        raise CheckError(f"{where} must be a table ([[assets]])")
    unknown_keys(entry, ASSET_KEYS, where, "an asset key")
    decimals = entry.get("significant_decimals")
    if decimals is not None and (
        isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 7
    ):
        raise CheckError(f"{where}: significant_decimals must be a whole number from 0 to 7")
    for key in ("deposit_enabled", "withdraw_enabled"):
        if key in entry and not isinstance(entry[key], bool):
            raise CheckError(f"{where}: {key} must be true or false")
    if entry.get("distribution_account") is not None:
        stellar_account(f"{where}: distribution_account", entry["distribution_account"])


# Never quoted in a message: their values are secrets (a database URL may hold a password).
SECRET_FIELDS = frozenset(
    {
        "secret_platform_api_auth_secret",
        "stellar_distribution_secret",
        "stellar_channel_secrets",
        "fireblocks_api_key",
        "database_url",
    }
)
_NUMBER_ERRORS = frozenset(
    {
        "int_parsing",
        "int_from_float",
        "int_type",
        "float_parsing",
        "float_type",
        "finite_number",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
    }
)


def number_rule(field: str, fields: Mapping[str, FieldInfo]) -> str | None:
    """What a numeric setting accepts, from its declaration: "a whole number from 1 to
    65535", "a number of seconds above 0"."""
    info = fields.get(field)
    if info is None or info.annotation not in (int, float):
        return None
    low = high = None
    low_word = ""
    for rule in info.metadata:
        if getattr(rule, "ge", None) is not None:
            low, low_word = rule.ge, "at least"
        if getattr(rule, "gt", None) is not None:
            low, low_word = rule.gt, "above"
        if getattr(rule, "le", None) is not None:
            high = rule.le
    kind = "a whole number" if info.annotation is int else "a number"
    if field.endswith("_s"):
        kind += " of seconds"
    if low is not None and high is not None and low_word == "at least":
        return f"{kind} from {low} to {high}"
    parts = [kind]
    if low is not None:
        parts.append(f"{low_word} {low}")
    if high is not None:
        parts.append(f"{'and ' if low is not None else ''}at most {high}")
    return " ".join(parts)


def one_line(exc: ValidationError, fields: Mapping[str, FieldInfo]) -> str:
    """The first error of the settings model as the line the CLI prints."""
    err = exc.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, CheckError):
        return str(cause)  # already one line naming the setting, no secret in it
    field = str(err["loc"][0]) if err["loc"] else ""
    name = ".".join(str(p) for p in err["loc"]).upper()
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not name:
        return msg
    shown = "" if field in SECRET_FIELDS else f" (got {err['input']!r})"
    if err["type"] == "literal_error":
        return f"{name} must be {err['ctx']['expected']}{shown}"
    rule = number_rule(field, fields)
    if rule is not None and err["type"] in _NUMBER_ERRORS:
        return f"{name} must be {rule}{shown}"
    return f"{name}: {msg}{shown}"
