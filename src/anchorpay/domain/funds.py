"""The methods that set amounts: notify_interactive_flow_completed, request_offchain_funds,
request_onchain_funds, notify_offchain/onchain_funds_received, notify_amounts_updated
(spec/rpc.md §3.1-§3.5, §3.10). Checks run in the reference's order; messages are exact.
"""

from __future__ import annotations

from dataclasses import replace

from anchorpay.domain.amounts import FeeInput, validate_fee_details
from anchorpay.domain.amounts import validate_asset_amount as check_amount
from anchorpay.domain.assets import is_stellar_asset
from anchorpay.domain.errors import InvalidParams
from anchorpay.domain.memo import parse_memo, self_memo
from anchorpay.domain.params import AmountInput, Params
from anchorpay.domain.plan import Facts, MachineContext, Outcome, Plan
from anchorpay.domain.statuses import Kind
from anchorpay.domain.transaction import FeeDetail, Transaction

FIREBLOCKS = "fireblocks"
NOT_CONFIGURED = (
    "Anchor is not configured to accept memo, memo_type and destination_account. Please set "
    "configuration deposit_info_generator_type to 'none' if you want to enable this feature"
)


def memo_type_refused(memo_type: str | None, ctx: MachineContext) -> None:
    """Fireblocks cannot pay or watch hash memos (spec §3.3)."""
    if ctx.custody_type == FIREBLOCKS and memo_type == "hash":
        raise InvalidParams(
            f"Memo type[{memo_type}] is not supported for custody type[{ctx.custody_type}]"
        )


def _asset_side(field: str, asset: str | None, stellar: bool, message: str | None = None) -> None:
    """The kind rule: `field` must (not) be a Stellar asset."""
    if asset is None or asset == "":  # an NPE in the reference
        raise InvalidParams(f"{field} cannot be empty")
    if is_stellar_asset(asset) != stellar:
        raise InvalidParams(
            message or f"{field} should be {'stellar' if stellar else 'non-stellar'} asset"
        )


def _fee_side(fee: FeeInput, stellar: bool, message: str | None = None) -> None:
    _asset_side(f"{fee.field}.asset", fee.asset, stellar, message)


def _amount(value: AmountInput) -> tuple[str | None, str | None]:
    return value.amount, value.asset


# notify_interactive_flow_completed (§3.1)


def check_interactive(plan: Plan, ctx: MachineContext) -> None:
    tx, p, assets = plan.transaction, plan.params, ctx.assets
    deposit = tx.kind is Kind.DEPOSIT
    assert p.amount_in is not None and p.amount_out is not None  # bean validation ran
    check_amount("amount_in", *_amount(p.amount_in), False, assets)
    _asset_side("amount_in.asset", p.amount_in.asset, stellar=not deposit)
    check_amount("amount_out", *_amount(p.amount_out), False, assets)
    _asset_side("amount_out.asset", p.amount_out.asset, stellar=deposit)
    if p.fee is None:
        raise InvalidParams("fee_details must be set")
    validate_fee_details(p.fee, tx, assets)
    # This method's own wording (request_*_funds say "fee_details.asset should be ...").
    wording = "a non-stellar asset" if deposit else "a stellar asset"
    _fee_side(p.fee, not deposit, f"fee asset should be {wording}")
    if p.amount_expected is not None:
        check_amount("amount_expected", p.amount_expected.amount, p.amount_in.asset, False, assets)


def apply_amounts(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    """Interactive and request_*_funds: what the request gives replaces the stored value."""
    tx, p = out.transaction, plan.params
    if p.amount_in is not None:
        tx.amount_in, tx.amount_in_asset = p.amount_in.amount, p.amount_in.asset
    if p.amount_out is not None:
        tx.amount_out, tx.amount_out_asset = p.amount_out.amount, p.amount_out.asset
    if p.fee is not None:
        _set_fee(tx, p.fee)
        tx.amount_fee_asset = p.fee.asset
    if p.amount_expected is not None:
        tx.amount_expected = p.amount_expected.amount
    elif p.amount_in is not None:
        tx.amount_expected = p.amount_in.amount


def _set_fee(tx: Transaction, fee: FeeInput) -> None:
    """amount_fee = total; the details list is replaced, or cleared when none is sent."""
    tx.amount_fee = fee.total
    tx.fee_details = (
        None
        if fee.details is None
        else [FeeDetail(d.name or "", d.amount or "", d.description) for d in fee.details]
    )


# request_offchain_funds / request_onchain_funds (§3.2, §3.3)


def _check_request(plan: Plan, ctx: MachineContext, fee_missing: str) -> None:
    tx, p, assets = plan.transaction, plan.params, ctx.assets
    deposit = tx.kind is Kind.DEPOSIT
    all_absent = p.amount_in is None and p.fee is None and p.amount_expected is None
    if not all_absent and (p.amount_in is None or p.fee is None):
        raise InvalidParams(
            "All (amount_out is optional) or none of the amount_in, amount_out, and "
            "fee_details should be set"
        )
    if p.amount_in is not None:
        _asset_side("amount_in.asset", p.amount_in.asset, stellar=not deposit)
        check_amount("amount_in", *_amount(p.amount_in), True, assets)
    if p.amount_out is not None:
        _asset_side("amount_out.asset", p.amount_out.asset, stellar=deposit)
        check_amount("amount_out", *_amount(p.amount_out), True, assets)
    if p.fee is not None:
        _fee_side(p.fee, stellar=not deposit)
        validate_fee_details(p.fee, tx, assets)
    if p.amount_expected is not None:
        in_asset = p.amount_in.asset if p.amount_in is not None else None
        check_amount("amount_expected", p.amount_expected.amount, in_asset, False, assets)
    if p.amount_in is None and tx.amount_in is None:
        raise InvalidParams("amount_in is required")
    if p.amount_out is None and tx.amount_out is None:
        if tx.quote_id is not None:
            raise InvalidParams("amount_out is required for transactions with firm quotes")
        if tx.amount_in_asset == tx.amount_out_asset:  # two nulls count as equal [REF-QUIRK]
            raise InvalidParams("amount_out is required for non-exchange transactions")
    if p.fee is None and tx.amount_fee is None:
        raise InvalidParams(fee_missing)


def check_request_offchain(plan: Plan, ctx: MachineContext) -> None:
    _check_request(plan, ctx, "fee_details is required")


def check_request_onchain(plan: Plan, ctx: MachineContext) -> None:
    _check_request(plan, ctx, "fee_details or amount_fee is required")
    p = plan.params
    if ctx.deposit_info_generator == "none":
        plan.memo_type = parse_memo(p.memo, p.memo_type)
        if p.memo is None or p.memo == "":
            raise InvalidParams("memo and memo_type are required")
        if p.destination_account is None or p.destination_account == "":
            raise InvalidParams("destination_account is required")
        memo_type_refused(plan.memo_type, ctx)
        return
    if p.memo is not None or p.memo_type is not None or p.destination_account is not None:
        raise InvalidParams(NOT_CONFIGURED)
    plan.needs_deposit_info = True


def apply_request_onchain(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    apply_amounts(plan, facts, ctx, out)
    tx, p = out.transaction, plan.params
    if ctx.deposit_info_generator == "none":
        account, memo, memo_type = p.destination_account, p.memo, plan.memo_type
    elif facts.deposit_info is not None:
        info = facts.deposit_info
        account, memo, memo_type = info.destination_account, info.memo, info.memo_type
    else:  # the reference's self generator: the current account, a hash of the id
        account, memo, memo_type = tx.to_account, self_memo(tx.id), "hash"
    memo_type_refused(memo_type, ctx)
    tx.to_account = tx.withdraw_anchor_account = account
    tx.memo, tx.memo_type = memo, memo_type


def _legacy_fee_asset(plan: Plan) -> None:
    """The 2.x notify methods took `amount_fee: {amount}` (no asset: the stored fee asset
    applies), as the 2.8.4 documentation's notify_amounts_updated example sends it."""
    fee, tx = plan.params.fee, plan.transaction
    if fee is not None and fee.field == "amount_fee" and fee.asset is None:
        if tx.amount_fee_asset is not None:
            plan.params = replace(plan.params, fee=replace(fee, asset=tx.amount_fee_asset))


# notify_offchain_funds_received / notify_onchain_funds_received (§3.4, §3.5)


def check_received(plan: Plan, ctx: MachineContext) -> None:
    _legacy_fee_asset(plan)
    tx, p, assets = plan.transaction, plan.params, ctx.assets
    given = (p.amount_in is not None, p.amount_out is not None, p.fee is not None)
    if given not in ((False, False, False), (True, True, True), (True, False, False)):
        raise InvalidParams(
            "Invalid amounts combination provided: all, none or only amount_in should be set"
        )
    if p.amount_in is not None:
        check_amount("amount_in", p.amount_in.amount, tx.amount_in_asset, False, assets)
    if p.amount_out is not None:
        check_amount("amount_out", p.amount_out.amount, tx.amount_out_asset, False, assets)
    if p.fee is not None:
        validate_fee_details(p.fee, tx, assets)


def apply_received_amounts(tx: Transaction, p: Params) -> None:
    """Amounts only: the stored assets stay. A fee asset is stored only when none was (the
    reference drops it, leaving a fee without an asset)."""
    if p.amount_in is not None:
        tx.amount_in = p.amount_in.amount
    if p.amount_out is not None:
        tx.amount_out = p.amount_out.amount
    if p.fee is not None:
        _set_fee(tx, p.fee)
        if tx.amount_fee_asset is None:
            tx.amount_fee_asset = p.fee.asset


def apply_offchain_received(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    tx, p = out.transaction, plan.params
    if p.external_transaction_id is not None:
        tx.external_transaction_id = p.external_transaction_id
        if p.funds_received_at is not None:  # honoured only with the external id (§2.5)
            tx.transfer_received_at = p.funds_received_at
    if tx.transfer_received_at is None:
        tx.transfer_received_at = ctx.now
    apply_received_amounts(tx, p)


# notify_amounts_updated (§3.10)


def check_amounts_updated(plan: Plan, ctx: MachineContext) -> None:
    _legacy_fee_asset(plan)
    tx, p = plan.transaction, plan.params
    assert p.amount_out is not None  # bean validation ran
    check_amount("amount_out", p.amount_out.amount, tx.amount_out_asset, True, ctx.assets)
    if p.fee is None:
        raise InvalidParams("fee_details must be set")
    validate_fee_details(p.fee, tx, ctx.assets)


def apply_amounts_updated(plan: Plan, facts: Facts, ctx: MachineContext, out: Outcome) -> None:
    """amount_out and the fee change; amount_in and a stored fee asset do not."""
    p = plan.params
    assert p.amount_out is not None and p.fee is not None
    tx = out.transaction
    tx.amount_out = p.amount_out.amount
    _set_fee(tx, p.fee)
    if tx.amount_fee_asset is None:  # as in apply_received_amounts
        tx.amount_fee_asset = p.fee.asset
