"""Structured logs over HTTP against a started server: the request id a business sends is
echoed, and the JSON lines of the worker carrying its payout out carry that id, so one
filter follows a payout from the request to its ledger hash."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anchorpay.logs import JsonFormatter
from support.payout_fixtures import funded_deposit, running_app


@contextmanager
def json_lines() -> Iterator[list[dict[str, Any]]]:
    """Every anchorpay log line written inside, as the JSON objects LOG_FORMAT=json writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("anchorpay")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


async def test_one_request_id_follows_a_payout_to_the_ledger(tmp_path: Path, db_url: str) -> None:
    with json_lines() as lines:
        async with running_app(tmp_path, database_url=db_url) as env:
            user = await env.account()
            tx_id = await funded_deposit(env, user.public_key)
            body = [
                {
                    "jsonrpc": "2.0",
                    "id": 7,
                    "method": "do_stellar_payment",
                    "params": {"transaction_id": tx_id},
                }
            ]
            answer = await env.client.post("/", json=body, headers={"X-Request-Id": "biz-42"})
            assert answer.headers["X-Request-Id"] == "biz-42"
            assert await env.until_status(tx_id, "completed") == "completed"
            (payout,) = await env.payouts(tx_id)
            generated = await env.client.get(f"/transactions/{tx_id}")
            assert len(generated.headers["X-Request-Id"]) == 32  # none sent: a new one
            bad = await env.client.get("/health", headers={"X-Request-Id": "a b fake=1"})
            assert len(bad.headers["X-Request-Id"]) == 32  # not a token: replaced
    followed = [line for line in lines if line.get("request_id") == "biz-42"]
    assert followed, lines
    assert {line["payout"] for line in followed} == {payout["id"]}
    assert {line["transaction"] for line in followed} == {tx_id}
    confirmed = [line for line in followed if "to=confirmed" in line["message"]]
    assert len(confirmed) == 1
    assert f"hash={payout['tx_hash']}" in confirmed[0]["message"]
    for line in lines:
        assert set(line) >= {"ts", "level", "logger", "message"}
        assert line["ts"].endswith("Z")
