"""Replays tests/cases/sep24_cases.json (spec/rpc.md §8.2-§8.4 and our deviations) through
the pure state machine: exact code and message with the input unchanged, or the status,
the result members, the stored attributes and the outcome."""

from __future__ import annotations

import copy
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

import pytest

from anchorpay.domain.errors import RpcError
from anchorpay.rpc.result import instant as format_instant
from anchorpay.rpc.result import transaction_result
from support.domain_fixtures import assets_of, context, facts, instant, load_cases, run, transaction

DOC = load_cases()
DOMAIN_CASES = [c for c in DOC["cases"] if c.get("layer") != "rpc"]


def _resolve(value: object, path: str) -> object:
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else getattr(value, part)
    return value


def _check_value(where: str, actual: object, expected: object, now: datetime) -> None:
    if isinstance(actual, datetime):
        actual = format_instant(actual)
    if expected == "<now>":
        assert actual == format_instant(now), where
    elif expected == "<present>":
        assert actual is not None, where
    else:
        assert actual == expected, where


@pytest.mark.parametrize("case", DOMAIN_CASES, ids=[c["case"] for c in DOMAIN_CASES])
def test_case(case: dict[str, Any]) -> None:
    assets = assets_of(DOC, case.get("assets"))
    tx = transaction(DOC, case["initial"])
    ctx = context(DOC, case.get("context"), assets)
    before = copy.deepcopy(tx)
    params = case["params"]
    if isinstance(params, dict):
        params = {"transaction_id": tx.id, **params}
    expect = case["expect"]
    if "code" in expect:
        with pytest.raises(RpcError) as raised:
            run(tx, case["method"], params, ctx, facts(case.get("facts")))
        assert (raised.value.code, raised.value.message) == (expect["code"], expect["message"])
        assert tx == before, "a refused call must leave the transaction unchanged"
        return
    outcome = run(tx, case["method"], params, ctx, facts(case.get("facts")))
    assert tx == before, "apply() must work on a clone"
    new = outcome.transaction
    result = transaction_result(new, assets)
    assert result["status"] == expect["status"]
    assert new.updated_at == ctx.now
    for key, expected in expect.get("fields", {}).items():
        if expected == "<absent>":
            assert key not in result, key
        else:
            assert key in result, key
            _check_value(key, result[key], expected, ctx.now)
    for path, expected in expect.get("stored", {}).items():
        _check_value(path, _resolve(new, path), expected, ctx.now)
    for key, expected in expect.get("outcome", {}).items():
        actual = getattr(outcome, key)
        _check_value(key, asdict(actual) if is_dataclass(actual) else actual, expected, ctx.now)


def test_every_spec_case_is_covered() -> None:
    """C17-C115 each appear (split rows as C20a, C20b...)."""
    names = {c["case"] for c in DOC["cases"]}
    numbers = {int(n[1:].rstrip("abcd")) for n in names if n.startswith("C")}
    assert numbers == set(range(17, 116))
    assert len(names) == len(DOC["cases"]), "case names are unique"


def test_instant_helper_round_trips() -> None:
    assert format_instant(instant("2024-06-25T20:18:34.205694Z")) == "2024-06-25T20:18:34.205694Z"
