"""A stand-in Horizon for the benchmarks, run as its own process on a loopback port:
`GET /accounts/{id}` answers an account trusting USDC after 20-50 ms (a real Horizon's
latency), `GET /stats` how many account reads it served. Anything else is a 404.

    python -m bench.horizon_stub      # prints the port it listens on, then serves

A separate process so its work does not run on the benchmarked event loop."""

from __future__ import annotations

import asyncio
import json
import random
import sys

USDC_CODE = "USDC"
USDC_ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
LATENCY_S = (0.020, 0.050)


class Stub:
    def __init__(self) -> None:
        self.account_reads = 0

    def answer(self, path: str) -> tuple[int, dict[str, object]]:
        if path.startswith("/accounts/"):
            self.account_reads += 1
            account = path.removeprefix("/accounts/")
            return 200, {
                "account_id": account,
                "sequence": "1",
                "balances": [
                    {"asset_type": "native", "balance": "100.0000000"},
                    {
                        "asset_type": "credit_alphanum4",
                        "asset_code": USDC_CODE,
                        "asset_issuer": USDC_ISSUER,
                        "balance": "0.0000000",
                    },
                ],
            }
        if path == "/stats":
            return 200, {"account_reads": self.account_reads}
        return 404, {"status": 404}

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive: GET requests without bodies, one after another."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
                status, body = self.answer(path)
                if path.startswith("/accounts/"):
                    await asyncio.sleep(random.uniform(*LATENCY_S))
                data = json.dumps(body).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve() -> None:
    stub = Stub()
    server = await asyncio.start_server(stub.connection, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)
