"""Every result of the reference cases (tests/cases/sep24_cases.json) fits the OpenRPC
document's closed transaction schema, so the description says what the API returns."""

from __future__ import annotations

from typing import Any

import pytest

from anchorpay.rpc.registry import Registry
from anchorpay.rpc.result import transaction_result
from support.domain_fixtures import assets_of, context, facts, load_cases, run, transaction
from support.openrpc_schema import document_validator, method

DOC = load_cases()
CASES = [c for c in DOC["cases"] if c.get("layer") != "rpc" and "code" not in c["expect"]]
DOCUMENT = Registry().description()
RESULT = document_validator(DOCUMENT, method(DOCUMENT, "get_transaction")["result"]["schema"])


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_a_case_result_fits_the_schema(case: dict[str, Any]) -> None:
    assets = assets_of(DOC, case.get("assets"))
    tx = transaction(DOC, case["initial"])
    params = case["params"]
    if isinstance(params, dict):
        params = {"transaction_id": tx.id, **params}
    ctx = context(DOC, case.get("context"), assets)
    outcome = run(tx, case["method"], params, ctx, facts(case.get("facts")))
    result = transaction_result(outcome.transaction, assets)
    assert [e.message for e in RESULT.iter_errors(result)] == []
