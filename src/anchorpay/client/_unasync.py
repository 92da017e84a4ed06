"""Writes `_sync.py` from `_async.py` (`python -m anchorpay.client._unasync`), so the two
clients cannot drift apart; a unit test checks the written file is current."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

# Whole lines first (imports and the module docstring), then words, in this order.
LINES = {
    '"""The asyncio client (httpx.AsyncClient). `_sync.py` is the same, blocking."""': (
        '"""The blocking client (httpx.Client). Written from `_async.py` by `_unasync.py`:\n'
        'edit that file, then run `python -m anchorpay.client._unasync`."""'
    ),
    "import asyncio": "import time",
    "from collections.abc import AsyncIterator, Callable, Coroutine, Sequence": (
        "from collections.abc import Callable, Iterator, Sequence"
    ),
    "from contextlib import asynccontextmanager": "from contextlib import contextmanager",
}
WORDS = (
    ("AsyncClient", "Client"),
    ("Coroutine[Any, Any, T]", "T"),
    ("AsyncIterator", "Iterator"),
    ("@asynccontextmanager", "@contextmanager"),
    ("async def ", "def "),
    ("async with ", "with "),
    ("await ", ""),
    ("asyncio.sleep", "time.sleep"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("aclose", "close"),
    ("`async with client.batch()", "`with client.batch()"),
)


def unasync(source: str) -> str:
    out = []
    for line in source.splitlines():
        line = LINES.get(line, line)
        for old, new in WORDS:
            line = line.replace(old, new)
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> None:
    (HERE / "_sync.py").write_text(unasync((HERE / "_async.py").read_text()))


if __name__ == "__main__":
    main()
