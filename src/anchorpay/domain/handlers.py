"""The methods without amounts: ledger notifications, off-chain notifications, trustlines,
the custody payout, errors and hold (spec/rpc.md §3.5-§3.9, §3.14-§3.20)."""

from __future__ import annotations

import copy

from anchorpay.domain.errors import InternalError, InvalidParams, InvalidRequest
from anchorpay.domain.funds import apply_received_amounts, check_received, memo_type_refused
from anchorpay.domain.plan import Facts, MachineContext, Outcome, PayoutIntent, Plan
from anchorpay.domain.statuses import Kind, Status

NATIVE = "stellar:native"


# Ledger notifications (§3.5, §3.9): the caller looks the hash up; we append what it found.


def check_onchain_received(plan: Plan, ctx: MachineContext) -> None:
    check_received(plan, ctx)
    plan.stellar_transaction_id = plan.params.stellar_transaction_id


def check_onchain_sent(plan: Plan, ctx: MachineContext) -> None:
    plan.stellar_transaction_id = plan.params.stellar_transaction_id


def _append_stellar_transaction(plan: Plan, facts: Facts, out: Outcome) -> bool:
    """Append the looked-up transaction when it has payments; True when it did."""
    found = facts.stellar_transaction
    if found is None:  # the caller could not look it up
        raise InternalError(
            f"Failed to retrieve Stellar transaction by ID[{plan.stellar_transaction_id}]"
        )
    if not found.payments:  # no payment operation: nothing recorded (spec §3.5)
        return False
    tx = out.transaction
    entry = copy.deepcopy(found)
    entry.id = plan.stellar_transaction_id or found.id
    entry.memo, entry.memo_type = tx.memo, tx.memo_type  # from the SEP transaction (§5.5)
    tx.stellar_transactions.append(entry)
    tx.stellar_transaction_id = entry.id
    return True


def apply_onchain_received(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    if _append_stellar_transaction(plan, facts, out):
        created = out.transaction.stellar_transactions[-1].created_at
        out.transaction.transfer_received_at = created or ctx.now
    apply_received_amounts(out.transaction, plan.params)


def apply_onchain_sent(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    _append_stellar_transaction(plan, facts, out)  # transfer_received_at is kept


# Off-chain notifications (§3.6-§3.8).


def apply_external_id(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    if plan.params.external_transaction_id is not None:
        out.transaction.external_transaction_id = plan.params.external_transaction_id


def apply_offchain_sent(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    tx, p = out.transaction, plan.params
    if p.external_transaction_id is None:
        return  # without the external id a deposit's funds are not marked (spec §2.5)
    tx.external_transaction_id = p.external_transaction_id
    if tx.kind is Kind.DEPOSIT:
        tx.transfer_received_at = p.funds_sent_at or ctx.now


# Trustlines and the custody payout (§3.18-§3.20).


def check_request_trust(plan: Plan, ctx: MachineContext) -> None:
    if ctx.custody_enabled:
        raise InvalidRequest("RPC method[request_trust] requires disabled custody integration")


def check_trust_set(plan: Plan, ctx: MachineContext) -> None:
    paying = ctx.custody_enabled and plan.params.success
    plan.next_status = Status.PENDING_STELLAR if paying else Status.PENDING_ANCHOR


def apply_trust_set(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    if ctx.custody_enabled:
        # The payout do_stellar_payment left waiting for trust resumes or is closed.
        out.resume_waiting_payout = plan.params.success
        out.cancel_waiting_payout = not plan.params.success


def check_do_stellar_payment(plan: Plan, ctx: MachineContext) -> None:
    tx = plan.transaction
    if not ctx.custody_enabled:
        raise InvalidRequest("RPC method[do_stellar_payment] requires enabled custody integration")
    memo_type_refused(tx.memo_type, ctx)
    # The reference would ask Horizon about a null account; we say what is missing.
    for value, name in (
        (tx.to_account, "destination_account"),
        (tx.amount_out, "amount_out"),
        (tx.amount_out_asset, "amount_out.asset"),
    ):
        if not value:
            raise InvalidParams(f"do_stellar_payment requires the transaction's {name}")
    assert tx.to_account is not None and tx.amount_out_asset is not None
    if tx.amount_out_asset != NATIVE:  # native is always trusted
        plan.trustline_query = (tx.to_account, tx.amount_out_asset)


def trusted(plan: Plan, facts: Facts) -> bool:
    """The Rule.TRUSTLINE fact: a failed lookup counts as no trustline, like the reference."""
    return plan.trustline_query is None or facts.trustline is True


def apply_do_stellar_payment(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    tx = out.transaction
    out.payout = PayoutIntent(
        purpose="payment",
        destination=tx.to_account or "",
        asset=tx.amount_out_asset or "",
        amount=tx.amount_out or "",
        memo=tx.memo,
        memo_type=tx.memo_type,
        refund_fee=None,
        wait_for_trust=not trusted(plan, facts),
    )


# Errors and hold (§3.14-§3.16).


def apply_closing(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    """notify_transaction_error / expired: a payout still waiting for trust is closed."""
    out.cancel_waiting_payout = True


def apply_on_hold(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    if out.transaction.transfer_received_at is None:  # [REF-QUIRK] hold marks funds received
        out.transaction.transfer_received_at = ctx.now
