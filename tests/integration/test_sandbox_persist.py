"""The sandbox ledger in a SQLite file (SANDBOX_STATE): a sandbox built again on the same file
continues the same network; another file, or none, is another network."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorpay.sandbox.app import Sandbox
from anchorpay.sandbox.persist import SandboxStateError
from support.sandbox_fixtures import (
    ASSETS,
    DIST,
    DIST_KP,
    PASSPHRASE,
    USDC,
    USDC_SDK,
    ManualClock,
    make_sandbox,
    payment,
)


def snapshot(sandbox: Sandbox) -> object:
    ledger = sandbox.ledger
    return (
        ledger.network_id,
        ledger.headers,
        {k: (a.sequence, a.balance, dict(a.trustlines)) for k, a in ledger.accounts.items()},
        ledger.transactions,
        ledger.operations,
        ledger.keys,
    )


async def test_a_sandbox_on_the_same_file_continues_the_network(tmp_path: Path) -> None:
    state = str(tmp_path / "sandbox.db")
    clock = ManualClock()
    first = make_sandbox(clock, state=state)
    user = first.create_account(trust=(USDC,))
    first.ledger.submit(payment(first, DIST_KP, user.public_key, "40", USDC_SDK, memo_id=9))
    await first.close_ledger()
    clock.advance(5)
    first.ledger.submit(payment(first, user, DIST, "15", USDC_SDK, memo_id=10))
    await first.close_ledger()
    queued = payment(first, DIST_KP, user.public_key, "1", USDC_SDK)  # not applied yet
    first.ledger.submit(queued)
    before = snapshot(first)
    first.close_state()

    again = make_sandbox(clock, state=state)
    assert snapshot(again) == before
    assert again.keys[user.public_key] == user.secret
    assert [p.xdr for p in again.ledger.queue] == [queued]
    assert again.ledger.records(account=user.public_key, cursor=None, limit=10) == (
        first.ledger.records(account=user.public_key, cursor=None, limit=10)
    )
    header = await again.close_ledger()  # the queued payment applies after the restart
    assert header.sequence == 4 and header.prev_hash == before[1][-1].hash  # type: ignore[index]
    assert again.ledger.balance(user.public_key, USDC) == 26
    again.close_state()

    third = make_sandbox(clock, state=state)
    assert third.ledger.latest == header
    assert third.ledger.balance(user.public_key, USDC) == 26
    third.close_state()


async def test_every_new_network_has_its_own_identity(tmp_path: Path) -> None:
    one, two = make_sandbox(), make_sandbox(state=str(tmp_path / "a.db"))
    assert one.ledger.network_id != two.ledger.network_id
    assert len(one.ledger.network_id) == 64
    assert one.ledger.balance(DIST, USDC) == two.ledger.balance(DIST, USDC) == 1000000


def test_a_state_file_of_another_passphrase_is_refused(tmp_path: Path) -> None:
    state = str(tmp_path / "sandbox.db")
    make_sandbox(state=state).close_state()
    with pytest.raises(SandboxStateError) as refused:
        Sandbox(assets=ASSETS, network_passphrase="other ; 2027", ledger_close_s=None, state=state)
    assert str(refused.value) == (
        f"the sandbox state {state} is a network with passphrase {PASSPHRASE!r}, not "
        "'other ; 2027'; give SANDBOX_STATE another file"
    )


def test_one_process_owns_a_state_file(tmp_path: Path) -> None:
    state = str(tmp_path / "sandbox.db")
    owner = make_sandbox(state=state)
    with pytest.raises(SandboxStateError) as refused:
        make_sandbox(state=state)
    assert str(refused.value) == (
        f"the sandbox state {state} is in use by another process; stop it, or give "
        "SANDBOX_STATE another file"
    )
    owner.close_state()
    make_sandbox(state=state).close_state()  # free again
