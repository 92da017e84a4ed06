"""Log lines an operator can follow: the ids of what a line is about (request, JSON-RPC
method and id, transaction, payout, hash) carried in context variables and written by the
formatter, as JSON (LOG_FORMAT=json, the default off a terminal) or as text.

`bind(transaction=..., payout=...)` sets ids for the code it wraps (a request, one payout's
step in the worker); every line logged inside carries them, whoever logs it. The request id
a business sent (`X-Request-Id`) is stored with the payout it asked for, so the worker's
lines about that payout carry it too: one grep follows a payout from the request to the
ledger (README, "Logs")."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The ids a line may carry, in the order they are written.
FIELDS = ("request_id", "rpc_method", "rpc_id", "transaction", "payout", "hash")
_ids: ContextVar[dict[str, str]] = ContextVar("anchorpay_log_ids", default={})  # noqa: B039
# What a caller may send as X-Request-Id: a short token (anything else gets a fresh id, so a
# header cannot inject text into the logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@contextmanager
def bind(**ids: str | None) -> Iterator[None]:
    """Add ids (None values are skipped) for the code inside the `with`."""
    values = {k: str(v) for k, v in ids.items() if v is not None}
    token = _ids.set({**_ids.get(), **values})
    try:
        yield
    finally:
        _ids.reset(token)


def current(name: str) -> str | None:
    return _ids.get().get(name)


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-Id when it is a short token, else a new one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def _without_trace(record: logging.LogRecord) -> logging.LogRecord:
    """Tracebacks only for errors of the server itself: a client's malformed request or a
    dropped connection is one line."""
    if record.levelno < logging.ERROR and record.exc_info:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = None
        record.exc_text = None
    return record


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(_without_trace(record))
        ids = _ids.get()
        if not ids:
            return line
        tail = " ".join(f"{k}={ids[k]}" for k in FIELDS if k in ids)
        first, _, rest = line.partition("\n")
        return f"{first} [{tail}]" + (f"\n{rest}" if rest else "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the ids, and `exc` (the
    traceback text) for errors."""

    def format(self, record: logging.LogRecord) -> str:
        record = _without_trace(record)
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = _ids.get()
        entry.update((k, ids[k]) for k in FIELDS if k in ids)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def formatter_for(log_format: str, stream: Any = None) -> logging.Formatter:
    """`json`, `text`, or `auto`: JSON unless the stream is a terminal."""
    if log_format == "auto":
        stream = stream if stream is not None else sys.stderr
        log_format = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    return JsonFormatter() if log_format == "json" else TextFormatter()
