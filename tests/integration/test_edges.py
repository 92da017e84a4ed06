"""Hardened edges (issue 15 parts 1 and 2): bad strings, deep nesting, out-of-range integers,
body size and content type, the catch-all, and batches whose middle element fails."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from anchorpay.api.limits import UNSUPPORTED_TYPE, too_large_message
from anchorpay.rpc.envelope import MAX_DEPTH, nested_too_deep
from support.app import AppClient, ClientFactory, SettingsFactory, create_tx, deposit_body

BAD_BODY = {"error": "Your request body is wrong in some way."}
JSON = {"content-type": "application/json"}


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    return body


def error_tx(tx_id: str, message: str = "broken") -> dict[str, Any]:
    return req("notify_transaction_error", {"transaction_id": tx_id, "message": message})


async def status_of(client: AppClient, tx_id: str) -> str:
    status: str = (await client.get(f"/transactions/{tx_id}")).json()["status"]
    return status


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# --- strings: lone surrogates, NUL, invalid UTF-8 -------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('"\\ud800"', "message must not contain a lone UTF-16 surrogate"),
        ('"a\\u0000b"', "message must not contain a NUL character"),
        ('"\\udfffx"', "message must not contain a lone UTF-16 surrogate"),
    ],
)
async def test_rpc_bad_string_in_params_is_32602_naming_the_field(
    app_client: AppClient, raw: str, message: str
) -> None:
    tx = await create_tx(app_client)
    body = (
        '{"jsonrpc":"2.0","method":"notify_transaction_error","id":1,'
        f'"params":{{"transaction_id":"{tx["id"]}","message":{raw}}}}}'
    )
    response = await app_client.post("/", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {"id": tx["id"], "code": -32602, "message": message},
        "id": 1,
    }
    assert await status_of(app_client, tx["id"]) == "incomplete"


async def test_rpc_bad_string_nested_and_in_keys(app_client: AppClient) -> None:
    nested_value = (
        '{"jsonrpc":"2.0","method":"notify_interactive_flow_completed","id":2,'
        '"params":{"transaction_id":"T","amount_in":{"amount":"1","asset":"x\\ud83d"}}}'
    )
    response = await app_client.post("/", content=nested_value, headers=JSON)
    assert response.json()["error"] == {
        "id": "T",
        "code": -32602,
        "message": "amount_in.asset must not contain a lone UTF-16 surrogate",
    }
    key = '{"jsonrpc":"2.0","method":"get_transactions","id":3,"params":{"statuses":["\\u0000"]}}'
    answer = (await app_client.post("/", content=key, headers=JSON)).json()
    assert answer["error"]["message"] == "statuses[0] must not contain a NUL character"
    bad_key = '{"jsonrpc":"2.0","method":"get_transactions","id":4,"params":{"\\ud800":1}}'
    answer = (await app_client.post("/", content=bad_key, headers=JSON)).json()
    assert answer["error"] == {
        "code": -32602,
        "message": "a field name must not contain a lone UTF-16 surrogate",
    }
    string_params = '{"jsonrpc":"2.0","method":"get_transactions","id":5,"params":"\\u0000"}'
    answer = (await app_client.post("/", content=string_params, headers=JSON)).json()
    assert answer["error"]["message"] == "params must not contain a NUL character"


async def test_rpc_bad_string_in_transaction_id_is_not_echoed(app_client: AppClient) -> None:
    body = (
        '{"jsonrpc":"2.0","method":"get_transaction","id":1,"params":{"transaction_id":"\\ud800"}}'
    )
    response = await app_client.post("/", content=body, headers=JSON)
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32602,
            "message": "transaction_id must not contain a lone UTF-16 surrogate",
        },
        "id": 1,
    }


async def test_rpc_bad_string_in_id_and_method_is_32600(app_client: AppClient) -> None:
    body = '[{"jsonrpc":"2.0","method":"get_transaction","id":"\\ud800"},'
    body += '{"jsonrpc":"2.0","method":"get_\\u0000transaction","id":2},'
    body += '{"jsonrpc":"\\ud800","method":"get_transaction","id":3}]'
    response = await app_client.post("/", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == [
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "id must not contain a lone UTF-16 surrogate"},
        },
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "method must not contain a NUL character"},
            "id": 2,
        },
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Unsupported JSON-RPC protocol version[\ud800]"},
            "id": 3,
        },
    ]
    assert "\\ud800" in response.text  # the lone surrogate is written as its JSON escape


@pytest.mark.parametrize(
    "body", [b'{"jsonrpc":"2.0","method":"x\xff","id":1}', b"\xed\xa0\x80", b"[\xc3]"]
)
async def test_rpc_invalid_utf8_body_is_bad_body(app_client: AppClient, body: bytes) -> None:
    response = await app_client.post("/", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json() == BAD_BODY


async def test_rest_create_bad_strings_name_the_field(app_client: AppClient) -> None:
    cases = [
        ('"client_name":"a\\u0000"', "client_name must not contain a NUL character"),
        ('"memo":"\\ud800","memo_type":"text"', "memo must not contain a lone UTF-16 surrogate"),
    ]
    for extra, message in cases:
        body = (
            '{"sep":"24","kind":"deposit","amount_expected":{"asset":"'
            + deposit_body()["amount_expected"]["asset"]
            + '","amount":"1"},"destination_account":"'
            + deposit_body()["destination_account"]
            + '",'
            + extra
            + "}"
        )
        response = await app_client.post("/transactions", content=body, headers=JSON)
        assert (response.status_code, response.json()) == (400, {"error": message})
    nested_bad = '{"amount_expected":{"asset":"\\udc00"}}'
    response = await app_client.post("/transactions", content=nested_bad, headers=JSON)
    assert response.json() == {
        "error": "amount_expected.asset must not contain a lone UTF-16 surrogate"
    }
    invalid = await app_client.post("/transactions", content=b'{"kind":"\xff"}', headers=JSON)
    assert (invalid.status_code, invalid.json()) == (
        400,
        {"error": "request body must be a JSON object"},
    )
    assert (await app_client.get("/transactions")).json() == {"records": []}


async def test_rest_nul_in_path_and_query(app_client: AppClient) -> None:
    response = await app_client.get("/transactions/a%00b")
    assert (response.status_code, response.json()) == (
        400,
        {"error": "transaction_id must not contain a NUL character"},
    )
    response = await app_client.get("/payouts/a%00b")
    assert response.json() == {"error": "payout_id must not contain a NUL character"}
    response = await app_client.get("/payouts?transaction_id=%00")
    assert response.json() == {"error": "transaction_id must not contain a NUL character"}
    response = await app_client.get("/observer/unmatched?account=G%00")
    assert response.json() == {"error": "account must not contain a NUL character"}


# --- nesting ---------------------------------------------------------------------------------


def test_depth_scan_ignores_brackets_in_strings() -> None:
    assert not nested_too_deep(nested(MAX_DEPTH))
    assert nested_too_deep(nested(MAX_DEPTH + 1))
    assert not nested_too_deep('["' + "[" * 100 + '\\"[[[["]')
    assert not nested_too_deep('["\\\\", ' + "[" * 5 + "1" + "]" * 5 + "]")
    assert nested_too_deep('["\\\\", ' + "[" * 40 + "1" + "]" * 40 + "]")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 150_000])
async def test_deep_nesting_is_a_bad_body(app_client: AppClient, depth: int) -> None:
    params = nested(depth)
    body = '{"jsonrpc":"2.0","method":"get_transactions","id":1,"params":' + params + "}"
    response = await app_client.post("/", content=body, headers=JSON)
    assert (response.status_code, response.json()) == (400, BAD_BODY)
    rest = await app_client.post("/transactions", content=params, headers=JSON)
    assert (rest.status_code, rest.json()) == (400, {"error": "request body must be a JSON object"})


async def test_nesting_at_the_limit_is_parsed(app_client: AppClient) -> None:
    params = nested(MAX_DEPTH - 2)  # + the request object + params' own braces
    body = '{"jsonrpc":"2.0","method":"get_transaction","id":1,"params":' + params + "}"
    response = await app_client.post("/", content=body, headers=JSON)
    assert response.json()["error"]["code"] == -32602


# --- integers out of range -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page_number": 2**64}, "page_number must be an integer from 0 to 1000000000"),
        ({"page_number": 10**400}, "page_number must be an integer from 0 to 1000000000"),
        ({"page_number": -(2**70)}, "page_number must be an integer of 0 or more"),
        ({"page_size": 2**64}, "page_size must be an integer from 1 to 200"),
    ],
)
async def test_rpc_page_limits(app_client: AppClient, params: Any, message: str) -> None:
    response = await app_client.rpc(req("get_transactions", params))
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": message},
        "id": 1,
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page_number=18446744073709551616", "page_number must be an integer from 0 to 1000000000"),
        ("page_number=" + "9" * 5000, "page_number must be an integer from 0 to 1000000000"),
        ("page_number=--5", "page_number must be an integer"),
        ("page_number=%C2%B2", "page_number must be an integer"),
        ("page_size=-" + "9" * 30, "page_size must be an integer from 1 to 200"),
    ],
)
async def test_rest_page_limits(app_client: AppClient, query: str, message: str) -> None:
    response = await app_client.get(f"/transactions?{query}")
    assert (response.status_code, response.json()) == (400, {"error": message})


async def test_rest_limits_of_payouts_and_observer(app_client: AppClient) -> None:
    answers = {
        "/payouts?limit=" + "9" * 5000: "limit must be between 1 and 200",
        "/payouts?limit=%C2%B2": "limit must be an integer",
        "/observer/unmatched?offset=" + "9" * 40: "offset must be an integer from 0 to 1000000000",
        "/observer/unmatched?offset=9223372036854775808": (
            "offset must be an integer from 0 to 1000000000"
        ),
        "/observer/unmatched?limit=--1": "limit must be an integer between 1 and 200",
    }
    for url, message in answers.items():
        response = await app_client.get(url)
        assert (response.status_code, response.json()) == (400, {"error": message}), url


async def test_memo_id_past_uint64_is_refused(app_client: AppClient) -> None:
    body = deposit_body(memo=str(2**64), memo_type="id")
    response = await app_client.post("/transactions", json=body)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "memo is invalid: an id memo must be an integer from 0 to 18446744073709551615"},
    )


# --- body size and content type --------------------------------------------------------------


async def test_body_over_the_limit_is_413_before_parsing(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    async with client_factory(settings_factory(max_request_bytes=2048)) as client:
        big = b"[" + b" " * 3000 + b"]"
        for path in ("/", "/transactions"):
            response = await client.post(path, content=big, headers=JSON)
            assert (response.status_code, response.json()) == (
                413,
                {"error": "request body too large: at most 2048 bytes (MAX_REQUEST_BYTES)"},
            )

        async def chunks() -> Any:  # no Content-Length: read in chunks, stop past the limit
            for _ in range(100):
                yield b" " * 1000

        response = await client.post("/", content=chunks(), headers=JSON)
        assert response.status_code == 413
        assert response.json() == {"error": too_large_message(2048)}
        at_limit = await client.post("/", content=b"[]" + b" " * 2046, headers=JSON)
        assert (at_limit.status_code, at_limit.text) == (200, "[]")


async def test_content_length_is_honoured_early(app_client: AppClient) -> None:
    headers = {**JSON, "content-length": str(10**9)}
    response = await app_client.post("/", content=b"[]", headers=headers)
    assert response.status_code == 413


def test_max_request_bytes_setting(settings_factory: SettingsFactory) -> None:
    from pydantic import ValidationError

    assert settings_factory().max_request_bytes == 1_048_576
    with pytest.raises(ValidationError):
        settings_factory(max_request_bytes=0)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_other_content_types_are_415(app_client: AppClient, content_type: str) -> None:
    for path in ("/", "/transactions"):
        response = await app_client.post(
            path, content=b"[]", headers={"content-type": content_type}
        )
        assert (response.status_code, response.json()) == (415, {"error": UNSUPPORTED_TYPE})
    assert UNSUPPORTED_TYPE == "Content-Type must be application/json"


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_content_types_are_accepted(app_client: AppClient, content_type: str) -> None:
    response = await app_client.post("/", content=b"[]", headers={"content-type": content_type})
    assert (response.status_code, response.text) == (200, "[]")


async def test_auth_runs_before_the_limits(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(
        platform_server_auth_type="api_key", secret_platform_api_auth_secret="k" * 8 + "x" * 32
    )
    async with client_factory(settings) as client:
        response = await client.post("/", content=b"x", headers={"content-type": "text/plain"})
        assert response.status_code == 403


# --- the catch-all ---------------------------------------------------------------------------


async def test_rest_catch_all_answers_json_with_a_reference(
    app_client: AppClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from anchorpay.store import transactions as repo

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(repo, "read", broken)  # what GET /transactions/{id} reads with
    with caplog.at_level(logging.ERROR):
        response = await app_client.get("/transactions/some-id")
    assert response.status_code == 500
    answer = response.json()
    assert set(answer) == {"error", "reference"} and answer["error"] == "internal error"
    assert re.fullmatch(r"[0-9a-f]{16}", answer["reference"])
    assert "secret internals" not in response.text
    assert answer["reference"] in caplog.text and "secret internals" in caplog.text


# --- batches: one element's unexpected failure -----------------------------------------------


async def test_batch_middle_element_failing_unexpectedly(
    app_client: AppClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from anchorpay import workflow

    txs = [await create_tx(app_client) for _ in range(3)]
    original = workflow.run_method

    async def flaky(services: Any, method: str, params: Any, *args: Any, **kwargs: Any) -> Any:
        if params.get("transaction_id") == txs[1]["id"]:
            raise RuntimeError("disk on fire /var/lib/secret")
        return await original(services, method, params, *args, **kwargs)

    monkeypatch.setattr(workflow, "run_method", flaky)
    with caplog.at_level(logging.ERROR):
        response = await app_client.rpc([error_tx(tx["id"]) for tx in txs])
    assert response.status_code == 200
    one, two, three = response.json()
    assert one["result"]["status"] == "error" and one["result"]["id"] == txs[0]["id"]
    assert three["result"]["status"] == "error" and three["result"]["id"] == txs[2]["id"]
    error = two["error"]
    assert set(two) == {"jsonrpc", "error", "id"} and two["id"] == 1
    assert error["id"] == txs[1]["id"] and error["code"] == -32603
    found = re.fullmatch(r"internal error, reference ([0-9a-f]{16})", error["message"])
    assert found is not None
    assert "disk on fire" not in response.text
    assert found.group(1) in caplog.text and "disk on fire" in caplog.text
    assert [await status_of(app_client, tx["id"]) for tx in txs] == [
        "error",
        "incomplete",
        "error",
    ]


async def test_batch_element_failing_to_encode_is_its_own_32603(
    app_client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anchorpay.rpc import registry as registry_mod

    original = registry_mod.Registry.call

    async def call(self: Any, services: Any, method: str, params: Any) -> Any:
        if method == "get_transactions":
            return {"not json": object()}
        return await original(self, services, method, params)

    monkeypatch.setattr(registry_mod.Registry, "call", call)
    tx = await create_tx(app_client)
    response = await app_client.rpc(
        [req("get_transactions", {}), req("get_transaction", {"transaction_id": tx["id"]}, id=2)]
    )
    first, second = response.json()
    assert first["error"]["code"] == -32603 and first["id"] == 1
    assert first["error"]["message"].startswith("internal error, reference ")
    assert second == {"jsonrpc": "2.0", "result": tx, "id": 2}


@pytest.mark.parametrize(
    "path", ["/nope", "/transactions/", "/transactions/%2F", "/payouts/", "/events/", "/health/"]
)
async def test_unknown_paths_are_json_404_not_redirects(app_client: AppClient, path: str) -> None:
    response = await app_client.get(path)
    assert (response.status_code, response.json()) == (404, {"error": "Not Found"})


async def test_a_wrong_method_is_json_405_with_allow(app_client: AppClient) -> None:
    response = await app_client.put("/transactions")
    assert (response.status_code, response.json()) == (405, {"error": "Method Not Allowed"})
    assert "POST" in response.headers["allow"]  # Starlette names the first route's methods
