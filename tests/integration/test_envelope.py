"""The JSON-RPC envelope: every case C01–C16 of spec/rpc.md §8.1 (a single request object gets
a single response object, the issue's improvement), plus ids, bodies and failures."""

from __future__ import annotations

import re
from typing import Any

import pytest

from anchorpay.domain.errors import InvalidParams
from support.app import USDC, AppClient, ClientFactory, SettingsFactory, create_tx

BAD_BODY = {"error": "Your request body is wrong in some way."}


def req(method: str, params: Any = None, id: Any = 1, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id, **extra}
    if params is not None:
        body["params"] = params
    return body


def error_tx(tx_id: str) -> dict[str, Any]:
    return req("notify_transaction_error", {"transaction_id": tx_id, "message": "broken"})


async def status_of(client: AppClient, tx_id: str) -> str:
    response = await client.get(f"/transactions/{tx_id}")
    status: str = response.json()["status"]
    return status


async def test_c01_batch_of_valid_requests_in_order(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    async with client_factory(settings_factory(rpc_batch_size_limit=2)) as client:
        first, second = await create_tx(client), await create_tx(client)
        response = await client.rpc(
            [
                req("get_transaction", {"transaction_id": first["id"]}),
                req("get_transaction", {"transaction_id": second["id"]}),
            ]
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == [
            {"jsonrpc": "2.0", "result": first, "id": 1},
            {"jsonrpc": "2.0", "result": second, "id": 1},
        ]


async def test_c02_invalid_protocol(app_client: AppClient) -> None:
    body = {"jsonrpc": "invalid_rpc_protocol", "method": "notify_interactive_flow_completed"}
    response = await app_client.rpc([{**body, "id": 1}])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {
                "code": -32600,
                "message": "Unsupported JSON-RPC protocol version[invalid_rpc_protocol]",
            },
            "id": 1,
        }
    ]


async def test_c03_version_error_wins_over_unknown_method(app_client: AppClient) -> None:
    response = await app_client.rpc([{"method": "invalid_rpc_method", "id": 1}])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Unsupported JSON-RPC protocol version[null]"},
            "id": 1,
        }
    ]


async def test_c04_unknown_method_with_non_object_params(app_client: AppClient) -> None:
    response = await app_client.rpc([req("invalid_rpc_method", "testParams")])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {"code": -32601, "message": "No matching RPC method[invalid_rpc_method]"},
            "id": 1,
        }
    ]


async def test_c05_valid_and_invalid_in_one_batch(app_client: AppClient) -> None:
    tx = await create_tx(app_client)
    response = await app_client.rpc([error_tx(tx["id"]), {**error_tx(tx["id"]), "jsonrpc": "1"}])
    first, second = response.json()
    assert first["result"]["status"] == "error" and "error" not in first
    assert second == {
        "jsonrpc": "2.0",
        "error": {
            "id": tx["id"],
            "code": -32600,
            "message": "Unsupported JSON-RPC protocol version[1]",
        },
        "id": 1,
    }
    # executed exactly once: a second notify_transaction_error would be refused from `error`
    assert await status_of(app_client, tx["id"]) == "error"


async def test_c06_batch_limit_exceeded_runs_nothing(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    async with client_factory(settings_factory(rpc_batch_size_limit=2)) as client:
        tx = await create_tx(client)
        response = await client.rpc([error_tx(tx["id"])] * 3)
        assert response.status_code == 200
        assert response.json() == [
            {
                "jsonrpc": "2.0",
                "error": {"code": -32600, "message": "RPC batch size limit[2] exceeded"},
            }
        ]
        assert await status_of(client, tx["id"]) == "incomplete"
        # exactly at the limit is processed
        at_limit = await client.rpc([req("get_transaction", {"transaction_id": tx["id"]})] * 2)
        assert [r["result"]["id"] for r in at_limit.json()] == [tx["id"], tx["id"]]


@pytest.mark.parametrize(
    ("version", "printed"),
    [("", ""), ("1.0", "1.0"), ("2", "2"), ("2.", "2."), ("2.1", "2.1"), (2, "2"), (2.0, "2.0")],
)
async def test_c07_unsupported_versions(app_client: AppClient, version: Any, printed: str) -> None:
    response = await app_client.rpc([req("get_transaction", jsonrpc=version)])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {
                "code": -32600,
                "message": f"Unsupported JSON-RPC protocol version[{printed}]",
            },
            "id": 1,
        }
    ]


@pytest.mark.parametrize("method", [None, ""])
async def test_c08_missing_or_empty_method(app_client: AppClient, method: Any) -> None:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1}
    if method is not None:
        body["method"] = method
    response = await app_client.rpc([body])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Method name can't be NULL or empty"},
            "id": 1,
        }
    ]


@pytest.mark.parametrize("present", [False, True])
async def test_c09_missing_or_null_id(app_client: AppClient, present: bool) -> None:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": "get_transaction"}
    if present:
        body["id"] = None
    response = await app_client.rpc([body])
    assert response.json() == [
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Id can't be NULL"}}
    ]


@pytest.mark.parametrize("bad_id", [True, False, {"a": 1}, [1]])
async def test_c10_id_of_wrong_type(app_client: AppClient, bad_id: Any) -> None:
    response = await app_client.rpc([req("get_transaction", id=bad_id)])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {
                "code": -32600,
                "message": "An identifier MUST contain a String or a Number",
            },
        }
    ]


async def test_c11_unknown_transaction(app_client: AppClient) -> None:
    params = {"transaction_id": "TX_1", "message": "test message"}
    response = await app_client.rpc([req("notify_interactive_flow_completed", params, id="1")])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {
                "id": "TX_1",
                "code": -32600,
                "message": "Transaction with id[TX_1] is not found",
            },
            "id": "1",
        }
    ]


async def test_c12_no_id_is_not_executed(app_client: AppClient) -> None:
    tx = await create_tx(app_client)
    body = error_tx(tx["id"])
    del body["id"]
    response = await app_client.rpc([body])
    assert response.json() == [
        {"jsonrpc": "2.0", "error": {"id": tx["id"], "code": -32600, "message": "Id can't be NULL"}}
    ]
    assert await status_of(app_client, tx["id"]) == "incomplete"


async def test_c13_version_3_with_error_id(app_client: AppClient) -> None:
    tx = await create_tx(app_client)
    response = await app_client.rpc([{**error_tx(tx["id"]), "jsonrpc": "3.0", "id": "3"}])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {
                "id": tx["id"],
                "code": -32600,
                "message": "Unsupported JSON-RPC protocol version[3.0]",
            },
            "id": "3",
        }
    ]
    assert await status_of(app_client, tx["id"]) == "incomplete"


async def test_c14_unsupported_method_with_error_id(app_client: AppClient) -> None:
    tx = await create_tx(app_client)
    response = await app_client.rpc([req("unsupported method", {"transaction_id": tx["id"]})])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {
                "id": tx["id"],
                "code": -32601,
                "message": "No matching RPC method[unsupported method]",
            },
            "id": 1,
        }
    ]


async def test_c15_empty_object_reports_every_problem(app_client: AppClient) -> None:
    response = await app_client.rpc([{}])
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {
                "code": -32600,
                "message": "Unsupported JSON-RPC protocol version[null];"
                "Method name can't be NULL or empty;Id can't be NULL",
            },
        }
    ]


async def test_c16_single_object_gets_single_response(app_client: AppClient) -> None:
    tx = await create_tx(app_client)
    response = await app_client.rpc(req("get_transaction", {"transaction_id": tx["id"]}, id=7))
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "result": tx, "id": 7}
    bad = await app_client.rpc({})
    assert bad.json() == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32600,
            "message": "Unsupported JSON-RPC protocol version[null];"
            "Method name can't be NULL or empty;Id can't be NULL",
        },
    }


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[1]", b"[null]", b'[{"id":1}, 2]', b"1", b'"x"', b"null", b"[NaN]"]
)
async def test_bodies_that_are_not_requests_are_400(app_client: AppClient, body: bytes) -> None:
    response = await app_client.post(
        "/", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == BAD_BODY


async def test_empty_batch_is_empty_array(app_client: AppClient) -> None:
    response = await app_client.rpc([])
    assert response.status_code == 200
    assert response.text == "[]"


@pytest.mark.parametrize(
    ("raw_id", "echoed"),
    [
        ('"1"', '"1"'),
        ("1", "1"),
        ("1.5", "1.5"),
        ("1.50", "1.50"),
        ("12345678901234567890123", "12345678901234567890123"),
        ("1e400", "1E+400"),
    ],
)
async def test_id_is_echoed_with_its_json_type(
    app_client: AppClient, raw_id: str, echoed: str
) -> None:
    body = '[{"jsonrpc":"2.0","method":"nope","id":' + raw_id + "}]"
    response = await app_client.post("/", content=body)
    assert response.text == (
        '[{"jsonrpc":"2.0","error":{"code":-32601,"message":"No matching RPC method[nope]"},'
        f'"id":{echoed}}}]'
    )


async def test_non_string_method_fails_lookup(app_client: AppClient) -> None:
    response = await app_client.rpc(req(5))  # type: ignore[arg-type]
    assert response.json()["error"] == {"code": -32601, "message": "No matching RPC method[5]"}


async def test_every_spec_method_is_known(app_client: AppClient) -> None:
    from anchorpay.rpc.registry import ALL_METHODS

    body = [req(m, {"transaction_id": "missing"}) for m in ALL_METHODS]
    response = await app_client.post("/", json=body[:20])
    response2 = await app_client.post("/", json=body[20:])
    for item in response.json() + response2.json():
        assert item.get("error", {}).get("code") != -32601, item
    quote = await app_client.rpc(req("get_quote", {"quote_id": "q"}))
    assert quote.json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "RPC method[get_quote] is not implemented yet"},
        "id": 1,
    }


@pytest.mark.parametrize("params", [None, "x", [1]])
async def test_params_missing_or_wrong_type_is_32602(app_client: AppClient, params: Any) -> None:
    response = await app_client.rpc(req("notify_transaction_error", params))
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32602,
            "message": "params must be a JSON object with a transaction_id",
        },
        "id": 1,
    }


async def test_unexpected_exception_is_internal_error_for_that_element_only(
    app_client: AppClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from anchorpay.rpc.methods import reads

    tx = await create_tx(app_client)
    calls = {"n": 0}
    original = reads.get_transaction

    async def flaky(services: Any, params: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("secret internals /etc/passwd")
        return await original(services, params)

    from anchorpay.rpc import registry as registry_mod

    monkeypatch.setattr(registry_mod.Registry, "call", _patched_call(flaky))
    good = req("get_transaction", {"transaction_id": tx["id"]})
    response = await app_client.rpc([good, good])
    first, second = response.json()
    message = first["error"].pop("message")
    assert first == {"jsonrpc": "2.0", "error": {"id": tx["id"], "code": -32603}, "id": 1}
    reference = re.fullmatch(r"internal error, reference ([0-9a-f]{16})", message)
    assert reference is not None, message
    assert second["result"] == tx
    assert "secret internals" not in response.text
    assert "secret internals" in caplog.text  # logged server-side, with its traceback
    assert reference.group(1) in caplog.text  # the same reference, to find the log line


def _patched_call(handler: Any) -> Any:
    async def call(self: Any, services: Any, method: str, params: Any) -> Any:
        return await handler(services, params)

    return call


async def test_rpc_error_from_handler_keeps_code_and_message(
    app_client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anchorpay.rpc import registry as registry_mod

    async def refuse(services: Any, params: Any) -> Any:
        raise InvalidParams("amount_in.amount should be positive")

    monkeypatch.setattr(registry_mod.Registry, "call", _patched_call(refuse))
    response = await app_client.rpc(req("get_transaction", {"transaction_id": 5}))
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": "amount_in.amount should be positive"},
        "id": 1,
    }


async def test_only_post(app_client: AppClient) -> None:
    assert (await app_client.get("/")).status_code == 405


async def test_json_numbers_in_params_keep_their_digits(app_client: AppClient) -> None:
    tx = await create_tx(app_client)
    body = (
        '{"jsonrpc":"2.0","id":1.10,"method":"request_offchain_funds","params":{'
        f'"transaction_id":"{tx["id"]}",'
        '"amount_in":{"amount":100.10,"asset":"iso4217:USD"},'
        f'"amount_out":{{"amount":95.1000000,"asset":"{USDC}"}},'
        '"fee_details":{"total":5,"asset":"iso4217:USD"}}}'
    )
    response = await app_client.post("/", content=body)
    assert response.text.endswith(',"id":1.10}')
    result = response.json()["result"]
    assert result["amount_in"] == {"amount": "100.10", "asset": "iso4217:USD"}
    assert result["amount_out"] == {"amount": "95.1000000", "asset": USDC}
