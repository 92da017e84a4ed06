"""Run every benchmark: `python -m bench` (or `make bench`)."""

from __future__ import annotations

import asyncio

from bench import (
    batching_bench,
    events_bench,
    fireblocks_bench,
    latency_bench,
    list_bench,
    machine_bench,
    rpc_bench,
    trustline_bench,
)


def main() -> None:
    machine_bench.main()
    asyncio.run(rpc_bench.main())
    asyncio.run(trustline_bench.main())
    asyncio.run(fireblocks_bench.main())
    asyncio.run(events_bench.main())
    asyncio.run(batching_bench.main())
    asyncio.run(latency_bench.main())
    asyncio.run(list_bench.main())


if __name__ == "__main__":
    main()
