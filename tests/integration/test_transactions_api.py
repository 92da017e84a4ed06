"""`POST /transactions`, `GET /transactions/{id}`, `GET /transactions`, and the RPC reads."""

from __future__ import annotations

from typing import Any

import pytest

from anchorpay.store import transactions as repo
from support.app import DIST, USDC, USER, AppClient, create_tx, deposit_body

OTHER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"


async def stored_count(client: AppClient) -> int:
    async with client.services.sessions() as session:
        return await repo.count(session)


async def rpc_result(client: AppClient, method: str, params: Any) -> Any:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    return (await client.rpc(body)).json()


async def test_create_deposit_answers_the_transaction_object(app_client: AppClient) -> None:
    response = await app_client.post(
        "/transactions", json=deposit_body(amount_expected={"asset": USDC, "amount": "10.50"})
    )
    assert response.status_code == 201
    tx = response.json()
    started_at = tx.pop("started_at")
    assert started_at.endswith("Z")
    assert len(tx.pop("id")) == 36
    assert tx == {
        "sep": "24",
        "kind": "deposit",
        "status": "incomplete",
        "amount_expected": {"amount": "10.50", "asset": USDC},
        "destination_account": USER,
        "client_name": "referenceCustodial",
        "customers": {"sender": {"account": USER}, "receiver": {"account": USER}},
        "creator": {"account": USER},
    }


async def test_create_withdrawal_pays_to_the_distribution_account(app_client: AppClient) -> None:
    body = {
        "kind": "withdrawal",
        "amount_expected": {"asset": USDC, "amount": 25},
        "source_account": USER,
        "refund_memo": "refund-1",
        "refund_memo_type": "text",
        "client_domain": "wallet.example.com",
    }
    response = await app_client.post("/transactions", json=body)
    assert response.status_code == 201, response.text
    tx = response.json()
    assert tx["kind"] == "withdrawal"
    assert tx["amount_expected"] == {"amount": "25", "asset": USDC}
    assert tx["destination_account"] == DIST
    assert tx["source_account"] == USER
    assert (tx["refund_memo"], tx["refund_memo_type"]) == ("refund-1", "text")
    assert tx["client_domain"] == "wallet.example.com"


async def test_json_number_amount_keeps_its_digits(app_client: AppClient) -> None:
    body = (
        '{"kind":"deposit","amount_expected":{"asset":"' + USDC + '","amount":10.10},'
        '"destination_account":"' + USER + '"}'
    )
    response = await app_client.post("/transactions", content=body)
    assert response.status_code == 201
    assert response.json()["amount_expected"]["amount"] == "10.10"


async def test_get_by_id_rest_and_rpc_agree(app_client: AppClient) -> None:
    created = await create_tx(app_client, memo="12345", memo_type="id")
    rest = await app_client.get(f"/transactions/{created['id']}")
    assert rest.status_code == 200 and rest.json() == created
    assert (created["memo"], created["memo_type"]) == ("12345", "id")
    rpc = await rpc_result(app_client, "get_transaction", {"transaction_id": created["id"]})
    assert rpc == {"jsonrpc": "2.0", "result": created, "id": 1}


async def test_get_unknown(app_client: AppClient) -> None:
    response = await app_client.get("/transactions/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "transaction nope not found"}
    rpc = await rpc_result(app_client, "get_transaction", {"transaction_id": "nope"})
    assert rpc["error"] == {
        "id": "nope",
        "code": -32603,
        "message": "transaction (id=nope) is not found",
    }


@pytest.mark.parametrize("params", [None, {}, {"transaction_id": ""}, {"transaction_id": None}])
async def test_get_transaction_without_id(app_client: AppClient, params: Any) -> None:
    rpc = await rpc_result(app_client, "get_transaction", params)
    error_id = {"id": ""} if params and params.get("transaction_id") == "" else {}
    assert rpc["error"] == {**error_id, "code": -32602, "message": "transaction id cannot be empty"}


async def test_idempotent_create_and_conflict(app_client: AppClient) -> None:
    body = deposit_body(id="client-1", amount_expected={"asset": USDC, "amount": "5"})
    first = await app_client.post("/transactions", json=body)
    assert first.status_code == 201
    again = await app_client.post("/transactions", json=body)
    assert again.status_code == 200 and again.json() == first.json()
    changed = await app_client.post("/transactions", json={**body, "client_name": "other"})
    assert changed.status_code == 409
    assert changed.json() == {"error": "transaction client-1 already exists with a different body"}
    assert await stored_count(app_client) == 1
    assert (await app_client.get("/transactions/client-1")).json() == first.json()


BAD_CREATES: list[tuple[Any, str]] = [
    ([1], "request body must be a JSON object"),
    ({**deposit_body(), "colour": "red"}, "unknown field: colour"),
    (deposit_body(sep="31"), 'sep must be "24": anchorpay creates SEP-24 transactions'),
    (deposit_body(kind="send"), "kind must be deposit or withdrawal"),
    (
        {k: v for k, v in deposit_body().items() if k != "kind"},
        "kind must be deposit or withdrawal",
    ),
    (
        {k: v for k, v in deposit_body().items() if k != "amount_expected"},
        "amount_expected is required",
    ),
    (
        deposit_body(amount_expected="USDC"),
        "amount_expected must be an object with asset and optional amount",
    ),
    (deposit_body(amount_expected={}), "amount_expected.asset is required"),
    (
        deposit_body(amount_expected={"asset": USDC, "amt": "1"}),
        "amount_expected has an unknown field: amt",
    ),
    (
        deposit_body(amount_expected={"asset": "stellar:EURC:" + OTHER}),
        f"amount_expected.asset stellar:EURC:{OTHER} is not a configured asset",
    ),
    (
        deposit_body(amount_expected={"asset": "iso4217:USD"}),
        "amount_expected.asset iso4217:USD must be a Stellar asset (stellar:…)",
    ),
    (
        deposit_body(amount_expected={"asset": USDC, "amount": "ten"}),
        'amount_expected.amount must be a decimal string such as "10.5"',
    ),
    (
        deposit_body(amount_expected={"asset": USDC, "amount": "-1"}),
        'amount_expected.amount must be a decimal string such as "10.5"',
    ),
    (
        deposit_body(amount_expected={"asset": USDC, "amount": "1e3"}),
        'amount_expected.amount must be a decimal string such as "10.5"',
    ),
    (
        deposit_body(amount_expected={"asset": USDC, "amount": True}),
        'amount_expected.amount must be a decimal string such as "10.5"',
    ),
    (
        deposit_body(amount_expected={"asset": USDC, "amount": "0"}),
        "amount_expected.amount must be positive",
    ),
    (
        deposit_body(amount_expected={"asset": USDC, "amount": "1.123456789"}),
        f"amount_expected.amount has 9 decimals; {USDC} allows at most 7",
    ),
    (
        {k: v for k, v in deposit_body().items() if k != "destination_account"},
        "destination_account is required for a deposit",
    ),
    (
        deposit_body(destination_account="GCUSERXXX"),
        "destination_account must be a valid Stellar account id (G...)",
    ),
    (
        deposit_body(destination_account=USER[:-1] + "A"),
        "destination_account must be a valid Stellar account id (G...)",
    ),
    (
        deposit_body(source_account=42),
        "source_account must be a valid Stellar account id (G...)",
    ),
    (deposit_body(memo="x"), "memo and memo_type must be given together"),
    (deposit_body(memo="x", memo_type="return"), "memo_type must be one of text, id, hash"),
    (
        deposit_body(memo="x" * 29, memo_type="text"),
        "memo is invalid: a text memo must be at most 28 bytes",
    ),
    (
        deposit_body(memo="é" * 15, memo_type="text"),
        "memo is invalid: a text memo must be at most 28 bytes",
    ),
    (
        deposit_body(memo="-1", memo_type="id"),
        "memo is invalid: an id memo must be an integer from 0 to 18446744073709551615",
    ),
    (
        deposit_body(memo="18446744073709551616", memo_type="id"),
        "memo is invalid: an id memo must be an integer from 0 to 18446744073709551615",
    ),
    (
        deposit_body(memo="abcd", memo_type="hash"),
        "memo is invalid: a hash memo must be 32 bytes, base64 or hex encoded",
    ),
    (
        deposit_body(refund_memo="x" * 29, refund_memo_type="text"),
        "refund_memo is invalid: a text memo must be at most 28 bytes",
    ),
    (deposit_body(client_name=""), "client_name must be a non-empty string"),
    (deposit_body(client_domain=["a"]), "client_domain must be a non-empty string"),
    (
        deposit_body(id="has space"),
        "id must be 1 to 64 characters: letters, digits, '.', '_', ':' or '-'",
    ),
    (
        {"kind": "withdrawal", "amount_expected": {"asset": USDC}, "destination_account": USER},
        "destination_account must not be set for a withdrawal: "
        "the user pays the asset's distribution account",
    ),
    (
        {"kind": "withdrawal", "amount_expected": {"asset": USDC}, "memo": "1", "memo_type": "id"},
        "memo and memo_type apply to deposits; a withdrawal's memo is set by request_onchain_funds",
    ),
]


@pytest.mark.parametrize(("body", "error"), BAD_CREATES)
async def test_bad_create_is_400_and_stores_nothing(
    app_client: AppClient, body: Any, error: str
) -> None:
    response = await app_client.post("/transactions", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert await stored_count(app_client) == 0


async def test_malformed_json_create(app_client: AppClient) -> None:
    response = await app_client.post("/transactions", content=b"{nope")
    assert response.status_code == 400
    assert response.json() == {"error": "request body must be a JSON object"}
    assert await stored_count(app_client) == 0


async def test_valid_memos_are_accepted(app_client: AppClient) -> None:
    hex_hash = "ab" * 32
    b64_hash = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
    for memo, memo_type in [
        ("x" * 28, "text"),
        ("18446744073709551615", "id"),
        (hex_hash, "hash"),
        (b64_hash, "hash"),
    ]:
        await create_tx(app_client, memo=memo, memo_type=memo_type)
    assert await stored_count(app_client) == 4


async def test_asset_not_enabled_for_kind(
    client_factory: Any, settings_factory: Any, tmp_path: Any
) -> None:
    assets = tmp_path / "assets.toml"
    assets.write_text(
        f'[[assets]]\nid = "{USDC}"\nsignificant_decimals = 7\n'
        f'distribution_account = "{DIST}"\nwithdraw_enabled = false\n'
    )
    async with client_factory(settings_factory(assets_file=assets)) as client:
        body = {"kind": "withdrawal", "amount_expected": {"asset": USDC}}
        response = await client.post("/transactions", json=body)
        assert response.json() == {"error": f"asset {USDC} is not enabled for withdrawal"}
        assert response.status_code == 400
        assert await stored_count(client) == 0


async def _make_several(client: AppClient, n: int) -> list[str]:
    return [(await create_tx(client, id=f"tx-{i:02d}"))["id"] for i in range(n)]


async def test_list_defaults_pagination_and_order(app_client: AppClient) -> None:
    ids = await _make_several(app_client, 5)
    everything = (await app_client.get("/transactions")).json()["records"]
    assert [r["id"] for r in everything] == ids
    page = await app_client.get("/transactions", params={"page_size": 2, "page_number": 1})
    assert [r["id"] for r in page.json()["records"]] == ids[2:4]
    desc = await app_client.get("/transactions", params={"order": "desc", "page_size": 3})
    assert [r["id"] for r in desc.json()["records"]] == ids[::-1][:3]
    beyond = await app_client.get("/transactions", params={"page_number": 9})
    assert beyond.json() == {"records": []}
    rpc = await rpc_result(
        app_client,
        "get_transactions",
        {"sep": "24", "order_by": "CREATED_AT", "order": "DESC", "page_number": 0, "page_size": 2},
    )
    assert [r["id"] for r in rpc["result"]["records"]] == ids[::-1][:2]
    defaults = await rpc_result(app_client, "get_transactions", None)
    assert [r["id"] for r in defaults["result"]["records"]] == ids
    assert defaults["result"]["records"] == everything


async def test_list_filters_by_status(app_client: AppClient) -> None:
    ids = await _make_several(app_client, 3)
    body = {
        "jsonrpc": "2.0",
        "method": "notify_transaction_error",
        "params": {"transaction_id": ids[1], "message": "x"},
        "id": 1,
    }
    assert "result" in (await app_client.rpc(body)).json()
    errored = await app_client.get("/transactions", params={"statuses": "error"})
    assert [r["id"] for r in errored.json()["records"]] == [ids[1]]
    both = await app_client.get("/transactions", params={"statuses": "error,incomplete"})
    assert len(both.json()["records"]) == 3
    rpc = await rpc_result(app_client, "get_transactions", {"statuses": ["incomplete"]})
    assert [r["id"] for r in rpc["result"]["records"]] == [ids[0], ids[2]]
    other_sep = await rpc_result(app_client, "get_transactions", {"sep": "31"})
    assert other_sep["result"] == {"records": []}


BAD_LISTS: list[tuple[dict[str, Any], str]] = [
    ({"sep": "7"}, "sep must be one of 6, 24, 31"),
    (
        {"order_by": "amount"},
        "order_by must be one of created_at, transfer_received_at, user_action_required_by",
    ),
    ({"order": "up"}, "order must be one of asc, desc"),
    ({"statuses": "done"}, "statuses: 'done' is not a SEP-24 status"),
    ({"page_number": "-1"}, "page_number must be an integer of 0 or more"),
    ({"page_number": "x"}, "page_number must be an integer"),
    ({"page_size": "0"}, "page_size must be an integer from 1 to 200"),
    ({"page_size": "201"}, "page_size must be an integer from 1 to 200"),
]


@pytest.mark.parametrize(("query", "error"), BAD_LISTS)
async def test_bad_list_query_rest(
    app_client: AppClient, query: dict[str, Any], error: str
) -> None:
    response = await app_client.get("/transactions", params=query)
    assert response.status_code == 400
    assert response.json() == {"error": error}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"order_by": "amount"}, BAD_LISTS[1][1]),
        ({"order": "up"}, "order must be one of asc, desc"),
        ({"statuses": "incomplete"}, "statuses must be a list of SEP-24 status strings"),
        ({"statuses": ["nope"]}, "statuses: 'nope' is not a SEP-24 status"),
        ({"page_number": "0"}, "page_number must be an integer"),
        ({"page_size": 1.5}, "page_size must be an integer"),
        ({"page_size": 500}, "page_size must be an integer from 1 to 200"),
        ([1], "params must be a JSON object"),
    ],
)
async def test_bad_get_transactions_params(app_client: AppClient, params: Any, error: str) -> None:
    rpc = await rpc_result(app_client, "get_transactions", params)
    assert rpc["error"] == {"code": -32602, "message": error}
