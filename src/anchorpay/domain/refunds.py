"""Refund methods and refund arithmetic (spec/rpc.md §3.11-§3.13, §3.21).

Totals are computed from the payments list that will be stored, each amount rescaled
(HALF_DOWN) to the decimals of the asset found by the *code* of amount_in_asset (the
reference's lookup), and stored with at most 4 fraction digits.
"""

from __future__ import annotations

import copy
from decimal import Decimal

from anchorpay.domain.amounts import format_total, parse_decimal, rescale, total
from anchorpay.domain.amounts import validate_asset_amount as check_amount
from anchorpay.domain.assets import AssetList
from anchorpay.domain.errors import InvalidParams
from anchorpay.domain.params import RefundInput
from anchorpay.domain.plan import Facts, MachineContext, Outcome, PayoutIntent, Plan
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import RefundPayment, Refunds, StellarTransaction, Transaction

EXCEEDS = "Refund amount exceeds amount_in"


def decimals_for(tx: Transaction, assets: AssetList) -> int | None:
    """Significant decimals of the first asset whose code is amount_in_asset's code
    (Stellar assets first) [REF-QUIRK, spec §3.13]."""
    if tx.amount_in_asset is None:
        return None
    parts = tx.amount_in_asset.split(":")
    asset = assets.by_code(parts[1] if len(parts) > 1 else parts[0])
    return asset.significant_decimals if asset is not None else None


def _value(text: str | None, decimals: int | None) -> Decimal:
    parsed = parse_decimal(text) if text else None
    return rescale(parsed if parsed is not None else Decimal(0), decimals)


def stored_payments(tx: Transaction) -> list[RefundPayment] | None:
    """The stored payments, or None when no refund was recorded yet."""
    if tx.refunds is None or not tx.refunds.payments:
        return None
    return list(tx.refunds.payments)


def refunded(payments: list[RefundPayment], decimals: int | None) -> Decimal:
    """Σ amount + Σ fee: amount_refunded includes fees."""
    return total(*(_value(p.amount, decimals) + _value(p.fee, decimals) for p in payments))


def totals(payments: list[RefundPayment], decimals: int | None) -> Refunds:
    fees = total(*(_value(p.fee, decimals) for p in payments))
    return Refunds(
        amount_refunded=format_total(refunded(payments, decimals)),
        amount_fee=format_total(fees),
        payments=payments,
    )


def _compare(tx: Transaction, refund_total: Decimal, decimals: int | None) -> Status:
    amount_in = _value(tx.amount_in, decimals)  # no amount_in: any refund exceeds it
    if refund_total > amount_in:
        raise InvalidParams(EXCEEDS)
    return Status.REFUNDED if refund_total == amount_in else Status.PENDING_ANCHOR


def check_refund(refund: RefundInput, tx: Transaction, assets: AssetList) -> None:
    """Spec §3.11 steps 2-5 (shared by notify_refund_pending/sent and do_stellar_refund).
    The reference NPEs (-32603) on a missing nested object; we name it."""
    if refund.amount is None:
        raise InvalidParams("refund.amount is required")
    check_amount("refund.amount", refund.amount.amount, tx.amount_in_asset, False, assets)
    if refund.amount_fee is None:
        raise InvalidParams("refund.amount_fee is required")
    check_amount("refund.amountFee", refund.amount_fee.amount, tx.amount_in_asset, True, assets)
    if refund.amount.asset != tx.amount_in_asset:
        raise InvalidParams("refund.amount.asset does not match transaction amount_in_asset")
    # With no fee asset stored, the fee is in the amount-in asset (what the worker sends).
    expected_fee_asset = tx.amount_fee_asset or tx.amount_in_asset
    if refund.amount_fee.asset != expected_fee_asset:
        raise InvalidParams(
            "refund.amount_fee.asset does not match match transaction amount_fee_asset"
        )


def _payment(refund: RefundInput, id_type: str) -> RefundPayment:
    assert refund.amount is not None and refund.amount_fee is not None  # check_refund ran
    return RefundPayment(
        id=refund.id or "",
        id_type=id_type,
        amount=refund.amount.amount or "",
        fee=refund.amount_fee.amount or "",
    )


def _require_id(refund: RefundInput) -> None:
    if refund.id is None or refund.id == "":
        raise InvalidParams("refund.id is required")


def check_refund_pending(plan: Plan, ctx: MachineContext) -> None:
    tx, refund = plan.transaction, plan.params.refund
    if tx.kind is not Kind.DEPOSIT:
        return  # withdrawals ignore `refund` entirely (spec §3.11)
    if refund is None:
        raise InvalidParams("refund must not be null")
    check_refund(refund, tx, ctx.assets)
    _require_id(refund)
    decimals = decimals_for(tx, ctx.assets)
    # Ids are not unique here: notify_refund_pending appends (spec §3.11).
    payments = [*(stored_payments(tx) or []), _payment(refund, "external")]
    if refunded(payments, decimals) > _value(tx.amount_in, decimals):
        raise InvalidParams(EXCEEDS)
    plan.refund_payments = payments


def check_refund_sent(plan: Plan, ctx: MachineContext) -> None:
    tx, refund = plan.transaction, plan.params.refund
    if refund is None and (tx.status is Status.PENDING_ANCHOR or stored_payments(tx) is None):
        # the second condition is an NPE in the reference: nothing to confirm
        raise InvalidParams("refund is required")
    decimals = decimals_for(tx, ctx.assets)
    stored = stored_payments(tx)
    if refund is None:
        assert stored is not None
        plan.next_status = _compare(tx, refunded(stored, decimals), decimals)
        return  # confirms the refunds already recorded; refunds stay untouched
    check_refund(refund, tx, ctx.assets)
    _require_id(refund)
    known = stored is not None and any(p.id == refund.id for p in stored)
    if stored is not None and tx.status is not Status.PENDING_ANCHOR and not known:
        # A deposit in pending_external confirms a refund notify_refund_pending recorded.
        # A withdrawal in pending_stellar comes from do_stellar_refund, which records
        # nothing: its hash is a new payment (the reference refuses a second refund here).
        if tx.kind is Kind.DEPOSIT:
            raise InvalidParams("Invalid refund id")
    id_type = "external" if tx.kind is Kind.DEPOSIT else "stellar"
    # A payment with the same id is replaced and moves to the end; the total is that of the
    # list stored (the reference counts a repeated id twice in pending_anchor).
    payments = [p for p in stored or [] if p.id != refund.id]
    payments.append(_payment(refund, id_type))
    plan.next_status = _compare(tx, refunded(payments, decimals), decimals)
    plan.refund_payments = payments


def check_do_stellar_refund(plan: Plan, ctx: MachineContext) -> None:
    tx, refund = plan.transaction, plan.params.refund
    if not ctx.custody_enabled:
        raise InvalidParams("RPC method[do_stellar_refund] requires enabled custody integration")
    assert refund is not None  # bean validation ran
    check_refund(refund, tx, ctx.assets)
    decimals = decimals_for(tx, ctx.assets)
    assert refund.amount is not None and refund.amount_fee is not None
    refund_total = total(
        refunded(stored_payments(tx) or [], decimals),
        _value(refund.amount.amount, decimals),
        _value(refund.amount_fee.amount, decimals),
    )
    if refund_total > _value(tx.amount_in, decimals):
        raise InvalidParams(EXCEEDS)
    if _refund_destination(tx) is None:
        raise InvalidParams("do_stellar_refund requires the transaction's source_account")


def _refund_destination(tx: Transaction) -> str | None:
    """The user who paid: from_account, else the sender of the last observed payment (a
    refund's record is our own payment to the user, not theirs)."""
    if tx.from_account:
        return tx.from_account
    for stellar_tx in reversed(tx.stellar_transactions):
        if stellar_tx.refund:
            continue
        for payment in stellar_tx.payments:
            if payment.source_account:
                return payment.source_account
    return None


def apply_refund_payments(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    """notify_refund_pending / notify_refund_sent: store the payments and their totals; a
    refund the worker paid also gets its ledger record in stellar_transactions."""
    if plan.refund_payments is not None:
        decimals = decimals_for(plan.transaction, ctx.assets)
        # A copy: the kept payments are the stored transaction's own objects.
        out.transaction.refunds = totals(copy.deepcopy(plan.refund_payments), decimals)
    record = facts.refund_record
    refunds = out.transaction.refunds
    if record is not None and refunds is not None:
        if any(p.id == record.id for p in refunds.payments):
            add_refund_record(out.transaction, record)


def add_refund_record(tx: Transaction, record: StellarTransaction) -> bool:
    """Append the ledger record of a refund anchorpay paid to `tx.stellar_transactions`,
    marked as a refund, with the memo it was sent with (refund_memo); once per hash. The
    reference records such a refund only in `refunds` (spec §3.12); the wallet and the
    business also see its envelope and payment here (issue 16). Returns whether it was
    added. `stellar_transaction_id` stays the user's payment (withdrawal) or ours (deposit)."""
    if any(entry.id == record.id for entry in tx.stellar_transactions):
        return False
    entry = copy.deepcopy(record)
    entry.refund = True
    entry.memo, entry.memo_type = tx.refund_memo, tx.refund_memo_type
    tx.stellar_transactions.append(entry)
    return True


def apply_do_stellar_refund(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    """No refunds recorded here: notify_refund_sent records the payment once it is on the
    ledger (spec §3.21). The worker pays the refund amount; the fee stays with the anchor."""
    tx, refund = out.transaction, plan.params.refund
    assert refund is not None and refund.amount is not None and refund.amount_fee is not None
    out.payout = PayoutIntent(
        purpose="refund",
        destination=_refund_destination(tx) or "",
        asset=tx.amount_in_asset or "",
        amount=refund.amount.amount or "",
        memo=tx.refund_memo,
        memo_type=tx.refund_memo_type,
        refund_fee=refund.amount_fee.amount,
        wait_for_trust=False,
    )
