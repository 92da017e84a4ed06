"""The log formats and the ids they carry (anchorpay.logs)."""

from __future__ import annotations

import io
import json
import logging

from anchorpay.logs import (
    JsonFormatter,
    TextFormatter,
    bind,
    current,
    formatter_for,
    request_id_from,
)


def record(message: str, level: int = logging.INFO, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            info = sys.exc_info()
    return logging.LogRecord("anchorpay.x", level, __file__, 1, message, None, info)


def test_ids_are_bound_for_the_code_inside_only() -> None:
    with bind(request_id="r1", payout=None):
        with bind(payout="p1", transaction="t1"):
            assert (current("request_id"), current("payout")) == ("r1", "p1")
            line = json.loads(JsonFormatter().format(record("moved")))
        assert current("payout") is None
    assert current("request_id") is None
    assert line["message"] == "moved" and line["logger"] == "anchorpay.x"
    assert (line["level"], line["request_id"], line["transaction"], line["payout"]) == (
        "INFO",
        "r1",
        "t1",
        "p1",
    )
    assert list(line)[:4] == ["ts", "level", "logger", "message"]


def test_text_lines_end_with_the_ids_and_tracebacks_are_for_errors_only() -> None:
    with bind(transaction="t1", hash="h1"):
        text = TextFormatter().format(record("seen"))
        warning = TextFormatter().format(record("client went away", logging.WARNING, exc=True))
        error = json.loads(JsonFormatter().format(record("bug", logging.ERROR, exc=True)))
    assert text.endswith("anchorpay.x: seen [transaction=t1 hash=h1]")
    assert "Traceback" not in warning
    assert "ValueError: boom" in error["exc"]


def test_request_ids_from_callers_are_tokens_or_replaced() -> None:
    assert request_id_from("biz-42:a.b_c") == "biz-42:a.b_c"
    for bad in (None, "", "a b", "x" * 129, "é", 'a"b'):
        assert len(request_id_from(bad)) == 32


def test_auto_is_json_off_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(formatter_for("auto", io.StringIO()), JsonFormatter)
    assert isinstance(formatter_for("auto", Tty()), TextFormatter)
    assert isinstance(formatter_for("text"), TextFormatter)
    assert isinstance(formatter_for("json", Tty()), JsonFormatter)
