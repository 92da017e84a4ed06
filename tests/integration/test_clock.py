"""The clock seam: the composition root hands one clock to every part of the process, so a
test moves time instead of sleeping (issue 14). The scan keeps it the only place that reads
the time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from anchorpay.clock import ManualClock
from support.app import ClientFactory, create_tx

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
READS_TIME = re.compile(
    r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|time\.time\(|time\.monotonic\("
)


async def test_the_app_reads_the_clock_it_is_given(client_factory: ClientFactory) -> None:
    clock = ManualClock(T0)
    async with client_factory(clock=clock) as client:
        created = await create_tx(client)
        assert created["started_at"] == "2030-06-01T12:00:00Z"
        clock.advance(90)
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "notify_transaction_error",
            "params": {"transaction_id": created["id"], "message": "stop"},
        }
        moved = (await client.rpc(body)).json()["result"]
        assert moved["updated_at"] == "2030-06-01T12:01:30Z"


def test_only_the_clock_module_reads_the_time() -> None:
    readers = [
        f"{path.relative_to(REPO)}:{number}"
        for root in ("src", "adapters", "scheduler")
        for path in sorted((REPO / root).rglob("*.py"))
        if path.name != "clock.py"
        # Public helpers that run in the business's process, not the server's: the client
        # and the event receiver (they import nothing of the server, its clock included).
        and "client" not in path.relative_to(REPO).parts
        and path.relative_to(REPO) != Path("src/anchorpay/events.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if READS_TIME.search(line)
    ]
    assert readers == []
