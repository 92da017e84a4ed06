"""Generated requests against the app in-process (issue 15 part 6): whatever arrives, the answer
is never a 5xx, always a JSON body, never Python exception text, and a refused request changes
nothing stored.

CI-sized by default (a few thousand requests); `ANCHORPAY_FUZZ_EXAMPLES=<n>` runs n examples
per test instead (a long run). SQLite only: the database is not what is fuzzed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from anchorpay.rpc.registry import ALL_METHODS
from anchorpay.settings import Settings
from anchorpay.store import transactions as repo
from support.app import CONFIG_DIR, USDC, USER, FakeLedger, deposit_body

EXAMPLES = int(os.environ.get("ANCHORPAY_FUZZ_EXAMPLES", "0"))

# Text that must never reach a client: Python's exception names and tracebacks, driver names.
LEAKS = re.compile(
    r"Traceback|File \"|\b(?:[A-Z][A-Za-z]*(?:Error|Exception)|sqlalchemy|asyncpg|aiosqlite)\b"
    r"|internal error, reference"
)

PARAM_NAMES = (
    "transaction_id",
    "message",
    "amount_in",
    "amount_out",
    "amount_fee",
    "fee_details",
    "amount_expected",
    "memo",
    "memo_type",
    "destination_account",
    "stellar_transaction_id",
    "external_transaction_id",
    "funds_received_at",
    "user_action_required_by",
    "refund",
    "page_number",
    "page_size",
    "order_by",
    "order",
    "statuses",
    "sep",
    "quote_id",
)

# Strings the guards must catch, mixed into ordinary text.
NASTY = st.sampled_from(["\ud800", "\udfff", "\x00", "\udc80abc", "a\x00b", "\u202e", "\ufeff"])
TEXT = st.one_of(
    st.text(max_size=12),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=4), NASTY, st.text(max_size=4)),
    st.sampled_from(["", "10", "-1", "1e400", "0.00000001", "100", USDC, USER, "iso4217:USD"]),
    st.just("x" * 5000),
)
INTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -(10**30)]),
)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
LEAF = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)
JSON = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(PARAM_NAMES), TEXT), inner, max_size=4),
    ),
    max_leaves=12,
)


def deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@st.composite
def params(draw: st.DrawFn, tx_ids: list[str]) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(JSON)
    if kind == 1:
        return deep(draw(st.integers(20, 80)))
    value: dict[str, Any] = {}
    if draw(st.booleans()):
        value["transaction_id"] = draw(st.one_of(st.sampled_from(tx_ids), TEXT))
    names = draw(st.lists(st.sampled_from(PARAM_NAMES), max_size=5))
    for name in names:
        value[name] = draw(
            st.one_of(
                JSON,
                st.fixed_dictionaries({"amount": st.one_of(TEXT, INTS, FLOATS), "asset": TEXT}),
            )
        )
    return value


@st.composite
def rpc_request(draw: st.DrawFn, tx_ids: list[str]) -> Any:
    request: dict[str, Any] = {
        "jsonrpc": draw(st.one_of(st.just("2.0"), LEAF)),
        "method": draw(st.one_of(st.sampled_from(ALL_METHODS), TEXT, LEAF)),
        "id": draw(st.one_of(st.integers(0, 9), TEXT, LEAF)),
    }
    if draw(st.booleans()):
        request["params"] = draw(params(tx_ids))
    if draw(st.integers(0, 9)) == 0:
        del request[draw(st.sampled_from(["jsonrpc", "method", "id"]))]
    return request


@st.composite
def rpc_body(draw: st.DrawFn, tx_ids: list[str]) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(JSON)).encode()
    if kind == 2:
        depth = draw(st.integers(25, 100_000))  # as text: json.dumps itself would recurse
        return ('[{"a":' * depth + "1" + "}]" * depth).encode()
    if kind == 3:  # valid JSON text broken as UTF-8
        text = json.dumps(draw(rpc_request(tx_ids))).encode()
        cut = draw(st.integers(0, len(text)))
        return text[:cut] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3"])) + text[cut:]
    if kind < 10:
        value: Any = draw(rpc_request(tx_ids))
    else:
        value = draw(st.lists(rpc_request(tx_ids), max_size=5))
    return json.dumps(value).encode()


CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ]
    ),
)


@st.composite
def create_body(draw: st.DrawFn, tx_ids: list[str]) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(deep(draw(st.integers(25, 500)))).encode()
    if kind == 2:
        return json.dumps(draw(JSON)).encode()
    body = deposit_body()
    if draw(st.booleans()):
        body["kind"] = "withdrawal"
        del body["destination_account"]
    for name in draw(
        st.lists(
            st.sampled_from(
                [
                    "sep",
                    "kind",
                    "amount_expected",
                    "destination_account",
                    "source_account",
                    "memo",
                    "memo_type",
                    "refund_memo",
                    "refund_memo_type",
                    "client_domain",
                    "client_name",
                    "id",
                    "extra",
                ]
            ),
            max_size=3,
        )
    ):
        body[name] = draw(
            st.one_of(
                JSON,
                st.fixed_dictionaries({"asset": TEXT, "amount": st.one_of(TEXT, INTS, FLOATS)}),
                st.sampled_from(["id", "text", "hash", str(2**64), str(2**64 - 1), "deposit"]),
            )
        )
    if draw(st.integers(0, 3)) == 0:
        body["id"] = draw(st.sampled_from(tx_ids))
    return json.dumps(body).encode()


QUERY = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "page_number",
                "page_size",
                "order_by",
                "order",
                "statuses",
                "sep",
                "limit",
                "offset",
                "account",
                "transaction_id",
                "state",
                "x",
            ]
        ),
        st.one_of(
            TEXT,
            INTS.map(str),
            st.sampled_from(["--5", "²", "١", " 3 ", "9" * 5000, "1_0", "0x10", "%00"]),
        ),
    ),
    max_size=4,
)


class Harness:
    def __init__(self, client: httpx.AsyncClient, app: Starlette) -> None:
        self.client = client
        self.app = app
        self.tx_ids: list[str] = []

    async def snapshot(self) -> list[Any]:
        async with self.app.state.services.sessions() as session:
            found = await repo.list_page(
                session,
                statuses=None,
                order_by="created_at",
                order="asc",
                page_number=0,
                page_size=500,
            )
        return [(tx.id, tx) for tx in found]

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, url, **kwargs)
        check_answer(response, kwargs)
        return response


def check_answer(response: httpx.Response, request: dict[str, Any]) -> None:
    sent = repr(request)
    assert response.status_code < 500, (response.status_code, response.text[:500], sent[:500])
    try:
        response.json()
    except ValueError:
        pytest.fail(f"not JSON: {response.status_code} {response.text[:300]!r} for {sent[:300]}")
    for leak in LEAKS.findall(response.text):
        assert leak in sent, (leak, response.text[:500], sent[:500])


def is_refusal(response: httpx.Response) -> bool:
    if response.status_code >= 400:
        return True
    answer = response.json()
    items = answer if isinstance(answer, list) else [answer]
    return all(isinstance(item, dict) and "error" in item for item in items)


def app_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}",
        "stellar_network": "testnet",
        "horizon_url": "http://horizon.invalid",
        "custody_type": "none",
        "assets_file": CONFIG_DIR / "assets.toml",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    from anchorpay.app import create_app

    ledger = FakeLedger()
    ledger.add_account(USER, USDC)
    app = create_app(app_settings(tmp_path), run_worker=False, ledger=ledger)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fuzz.test") as client:
            h = Harness(client, app)
            for kind in ("deposit", "deposit", "withdrawal"):
                body = deposit_body(kind=kind)
                if kind == "withdrawal":
                    del body["destination_account"]
                created = await client.post("/transactions", json=body)
                assert created.status_code == 201, created.text
                h.tx_ids.append(created.json()["id"])
            flow = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "notify_interactive_flow_completed",
                "params": {
                    "transaction_id": h.tx_ids[1],
                    "message": "m",
                    "amount_in": {"amount": "100", "asset": "iso4217:USD"},
                    "amount_out": {"amount": "95", "asset": USDC},
                    "fee_details": {"total": "5", "asset": "iso4217:USD"},
                },
            }
            moved = await client.post("/", json=flow)
            assert "result" in moved.json(), moved.text
            yield h


def run_fuzz(
    tmp_path: Path,
    default_examples: int,
    strategy: Callable[[list[str]], st.SearchStrategy[Any]],
    step: Callable[[Harness, Any], Any],
) -> None:
    loop = asyncio.new_event_loop()
    context = harness(tmp_path)
    h = loop.run_until_complete(context.__aenter__())
    try:

        @settings(
            max_examples=EXAMPLES or default_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy(h.tx_ids))
        def one(example: Any) -> None:
            loop.run_until_complete(step(h, example))

        one()
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


async def rpc_step(h: Harness, example: tuple[bytes, str | None]) -> None:
    body, content_type = example
    headers = {"content-type": content_type} if content_type is not None else {}
    before = await h.snapshot()
    response = await h.send("POST", "/", content=body, headers=headers)
    if is_refusal(response):
        assert await h.snapshot() == before, response.text[:500]


def test_fuzz_rpc(tmp_path: Path) -> None:
    def strategy(tx_ids: list[str]) -> st.SearchStrategy[Any]:
        return st.tuples(
            rpc_body(tx_ids),
            st.one_of(st.just("application/json"), st.just(None), CONTENT_TYPES),
        )

    run_fuzz(tmp_path, 600, strategy, rpc_step)


async def rest_step(h: Harness, example: tuple[int, Any, Any, Any]) -> None:
    route, body, content_type, query = example
    headers = {"content-type": content_type} if content_type is not None else {}
    before = await h.snapshot()
    if route == 0:
        response = await h.send("POST", "/transactions", content=body, headers=headers)
        if response.status_code >= 400:
            assert await h.snapshot() == before, response.text[:500]
        return
    # A non-empty id: "/transactions/" is the router's slash redirect, not one of our answers.
    path_id = (query[0][1] if query else "") or h.tx_ids[0]
    url = {
        1: "/transactions",
        2: "/transactions/{}",
        3: "/payouts",
        4: "/payouts/{}",
        5: "/observer/unmatched",
        6: "/health",
    }[route]
    if "{}" in url:
        url = url.format(quote(path_id.encode("utf-8", "surrogatepass"), safe=""))
    if query:
        url += "?" + "&".join(
            f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in query
        )
    await h.send("GET", url)
    assert await h.snapshot() == before


def test_fuzz_rest(tmp_path: Path) -> None:
    def strategy(tx_ids: list[str]) -> st.SearchStrategy[Any]:
        return st.tuples(
            st.integers(0, 6),
            create_body(tx_ids),
            CONTENT_TYPES,
            QUERY,
        )

    run_fuzz(tmp_path, 800, strategy, rest_step)
