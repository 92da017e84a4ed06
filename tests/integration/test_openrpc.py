"""The OpenRPC description over HTTP (issue 18 part 3): `GET /openrpc.json` and `rpc.discover`
serve one document, valid against the OpenRPC meta-schema, describing every registered
method with params from the decoder's own model; the documentation's example requests
(tests/cases/seed_examples.json) validate against it, and real results against its
transaction schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from anchorpay.domain import machine
from anchorpay.domain.params import FIELDS
from anchorpay.rpc.registry import Registry
from anchorpay.rpc.schemas import KEY_SCHEMAS
from support.app import USDC, AppClient, ClientFactory, SettingsFactory, create_tx
from support.openrpc_schema import (
    document_validator,
    meta_validator,
    method,
    params_validator,
)

API_KEY = "openrpc-test-key-long-enough-for-auth"  # >= 32 bytes, as auth requires
SEED = json.loads(
    (Path(__file__).resolve().parents[1] / "cases" / "seed_examples.json").read_text()
)


async def discover(client: AppClient, **headers: str) -> dict[str, Any]:
    call = {"jsonrpc": "2.0", "id": 7, "method": "rpc.discover"}
    (answer,) = (await client.post("/", json=[call], headers=headers)).json()
    assert answer["id"] == 7 and "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


async def test_the_document_is_served_open_and_by_rpc_discover_behind_auth(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(
        platform_server_auth_type="api_key", secret_platform_api_auth_secret=API_KEY
    )
    async with client_factory(settings) as client:
        served = await client.get("/openrpc.json")  # no key: it describes the API, no data
        assert served.status_code == 200
        assert served.headers["content-type"] == "application/json"
        document = served.json()
        refused = await client.post(
            "/", json=[{"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}]
        )
        assert refused.status_code == 403
        assert await discover(client, **{"X-Api-Key": API_KEY}) == document

    assert list(meta_validator().iter_errors(document)) == []
    assert document["openrpc"] == "1.3.2"
    assert document["info"]["title"] == "anchorpay"
    broken = copy.deepcopy(document)
    method_index = [m["name"] for m in broken["methods"]].index("get_transaction")
    broken["methods"][method_index]["params"][0]["schema"] = {"type": 5}
    assert list(meta_validator().iter_errors(broken)) != []  # the meta-schema does check


def expected_params(name: str) -> list[str]:
    """What the decoder reads for `name`, spelled as params (`fee` is both fee dialects)."""
    names = ["transaction_id", "message"]
    for key in FIELDS[name]:
        names += ["fee_details", "amount_fee"] if key == "fee" else [key]
    return names


def test_every_registered_method_is_described_with_the_decoder_s_params() -> None:
    registry = Registry()
    document = registry.description()
    described = [m["name"] for m in document["methods"]]
    assert set(described) == {*registry.handlers, "rpc.discover"}
    assert len(described) == len(set(described))
    assert set(KEY_SCHEMAS) == {key for keys in FIELDS.values() for key in keys}
    for name in machine.METHODS:
        params = method(document, name)["params"]
        assert [p["name"] for p in params] == expected_params(name), name
        assert [p["name"] for p in params if p["required"]] == ["transaction_id"], name
        assert method(document, name)["result"]["schema"] == {
            "$ref": "#/components/schemas/Transaction"
        }
    listing = method(document, "get_transactions")["params"]
    assert [p["name"] for p in listing] == [
        "sep",
        "order_by",
        "order",
        "statuses",
        "page_number",
        "page_size",
    ]
    assert {p["name"]: p["schema"]["default"] for p in listing} == {
        "sep": "24",
        "order_by": "created_at",
        "order": "asc",
        "statuses": [],
        "page_number": 0,
        "page_size": 20,
    }


def seed_requests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{name}[{i}]", request)
        for name, requests in SEED["examples"].items()
        for i, request in enumerate(requests)
    ]


def test_the_documentation_s_example_requests_validate() -> None:
    document = Registry().description()
    requests = seed_requests()
    assert len(requests) >= 20
    for where, request in requests:
        validator = params_validator(document, request["method"])
        params = {**request["params"], "transaction_id": "8c6b1c5e"}
        assert list(validator.iter_errors(params)) == [], where

    # and the schemas refuse what the decoder refuses
    flow = params_validator(document, "notify_interactive_flow_completed")
    assert not flow.is_valid({"transaction_id": "t", "amount_in": [1]})
    assert not flow.is_valid({"transaction_id": "t", "amount_in": {"amount": True}})
    assert not flow.is_valid({"amount_in": {"amount": "1", "asset": "iso4217:USD"}})
    trust = params_validator(document, "notify_trust_set")
    assert trust.is_valid({"transaction_id": "t", "success": "TRUE"})
    assert not trust.is_valid({"transaction_id": "t", "success": "yes"})
    listing = params_validator(document, "get_transactions")
    assert listing.is_valid({"order_by": "CREATED_AT", "order": "desc", "sep": 24})
    assert not listing.is_valid({"page_size": 201})
    assert not listing.is_valid({"statuses": ["paid"]})


async def test_real_results_validate_against_the_transaction_schema(
    client_factory: ClientFactory,
) -> None:
    document = Registry().description()
    single = document_validator(document, method(document, "get_transaction")["result"]["schema"])
    page = document_validator(document, method(document, "get_transactions")["result"]["schema"])
    async with client_factory() as client:
        tx_id = (await create_tx(client))["id"]
        calls = [
            (
                "request_offchain_funds",
                {
                    "amount_in": {"amount": "11", "asset": "iso4217:USD"},
                    "amount_out": {"amount": "10", "asset": USDC},
                    "fee_details": {
                        "total": "1",
                        "asset": "iso4217:USD",
                        "details": [{"name": "service", "amount": "1"}],
                    },
                    "user_action_required_by": "2099-01-01T00:00:00Z",
                },
            ),
            ("notify_offchain_funds_received", {"external_transaction_id": "bank-1"}),
            (
                "notify_refund_pending",
                {
                    "refund": {
                        "id": "r1",
                        "amount": {"amount": "10", "asset": "iso4217:USD"},
                        "amount_fee": {"amount": "1", "asset": "iso4217:USD"},
                    }
                },
            ),
        ]
        results = []
        for name, params in calls:
            call = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": name,
                "params": {"transaction_id": tx_id, **params},
            }
            (answer,) = (await client.post("/", json=[call])).json()
            assert "result" in answer, answer
            results.append(answer["result"])
        assert {"fee_details", "refunds", "transfer_received_at"} <= set(results[-1])
        for result in results:
            assert list(single.iter_errors(result)) == [], result
        listing = {"jsonrpc": "2.0", "id": 2, "method": "get_transactions", "params": {}}
        (answer,) = (await client.post("/", json=[listing])).json()
        assert list(page.iter_errors(answer["result"])) == []
        assert not single.is_valid({**results[-1], "unexpected": 1})  # the schema is closed
