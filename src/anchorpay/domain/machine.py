"""The SEP-24 state machine: validate() a request against a stored transaction, then apply()
it with the facts the caller looked up (spec/rpc.md §2.4). Pure: no I/O, no clock (the
context carries `now`), and the stored transaction is never changed: apply() works on a
clone, so an error at any point leaves nothing changed.

The pipeline, first failure wins: decode params → state check (the table in
`transitions`) → user_action_required_by in the past → required fields ("bean" validation)
→ the method's checks → next status → "message is required" → effects.
"""

from __future__ import annotations

from collections.abc import Callable

from anchorpay.domain import funds, handlers, refunds, transitions
from anchorpay.domain.errors import InvalidParams, InvalidRequest, MethodNotFound
from anchorpay.domain.params import FIELDS, Params, decode
from anchorpay.domain.plan import (
    DepositInfo,
    Facts,
    MachineContext,
    Outcome,
    PayoutIntent,
    Plan,
)
from anchorpay.domain.statuses import ERROR_STATUSES, FINAL_STATUSES, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.domain.transitions import Rule

__all__ = [
    "METHODS",
    "DepositInfo",
    "Facts",
    "MachineContext",
    "Outcome",
    "PayoutIntent",
    "Plan",
    "apply",
    "validate",
]

# The 21 status-changing methods (spec §2.2 minus get_transaction(s) and get_quote).
METHODS: frozenset[str] = transitions.METHODS

Check = Callable[[Plan, MachineContext], None]
Effect = Callable[[Plan, Facts, MachineContext, Outcome], None]


def _nothing(*_: object) -> None:
    """Methods with no check or no effect beyond the common ones."""


# Method-specific checks (§2.4 step 4c, and step 5 where the next status is computed).
CHECKS: dict[str, Check] = {
    "notify_interactive_flow_completed": funds.check_interactive,
    "request_offchain_funds": funds.check_request_offchain,
    "request_onchain_funds": funds.check_request_onchain,
    "notify_offchain_funds_received": funds.check_received,
    "notify_onchain_funds_received": handlers.check_onchain_received,
    "notify_onchain_funds_sent": handlers.check_onchain_sent,
    "notify_amounts_updated": funds.check_amounts_updated,
    "notify_refund_pending": refunds.check_refund_pending,
    "notify_refund_sent": refunds.check_refund_sent,
    "do_stellar_refund": refunds.check_do_stellar_refund,
    "request_trust": handlers.check_request_trust,
    "notify_trust_set": handlers.check_trust_set,
    "do_stellar_payment": handlers.check_do_stellar_payment,
}

# Method-specific effects (§2.4 step 7), applied to the clone before the common updates.
EFFECTS: dict[str, Effect] = {
    "notify_interactive_flow_completed": funds.apply_amounts,
    "request_offchain_funds": funds.apply_amounts,
    "request_onchain_funds": funds.apply_request_onchain,
    "notify_offchain_funds_received": funds.apply_offchain_received,
    "notify_onchain_funds_received": handlers.apply_onchain_received,
    "notify_offchain_funds_sent": handlers.apply_offchain_sent,
    "notify_offchain_funds_pending": handlers.apply_external_id,
    "notify_offchain_funds_available": handlers.apply_external_id,
    "notify_onchain_funds_sent": handlers.apply_onchain_sent,
    "notify_amounts_updated": funds.apply_amounts_updated,
    "notify_refund_pending": refunds.apply_refund_payments,
    "notify_refund_sent": refunds.apply_refund_payments,
    "do_stellar_refund": refunds.apply_do_stellar_refund,
    "notify_transaction_error": handlers.apply_closing,
    "notify_transaction_expired": handlers.apply_closing,
    "notify_transaction_on_hold": handlers.apply_on_hold,
    "notify_trust_set": handlers.apply_trust_set,
    "do_stellar_payment": handlers.apply_do_stellar_payment,
}


def _bean_violations(method: str, p: Params) -> list[str]:
    """The top-level @NotNull/@NotBlank constraints (spec §2.8), in declaration order."""
    if method == "notify_interactive_flow_completed":
        return ["must not be null" for v in (p.amount_in, p.amount_out) if v is None]
    if method == "notify_amounts_updated" and p.amount_out is None:
        return ["must not be null"]
    if method in ("notify_onchain_funds_received", "notify_onchain_funds_sent"):
        if p.stellar_transaction_id is None or not p.stellar_transaction_id.strip():
            return ["must not be blank"]
    if method == "do_stellar_refund" and p.refund is None:
        return ["must not be null"]
    return []


def _state_check(tx: Transaction, method: str) -> transitions.Transition:
    funds_received = tx.funds_received
    row = transitions.find(method, tx.kind, tx.status, funds_received) if tx.sep == "24" else None
    if row is None:
        raise InvalidRequest(
            transitions.state_error_message(
                method, str(tx.kind), str(tx.status), funds_received, tx.sep
            )
        )
    return row


def validate(tx: Transaction, method: str, params: object, ctx: MachineContext) -> Plan:
    """Every check of the pipeline that needs no lookup. Raises RpcError; `tx` is untouched."""
    if method not in METHODS and method not in transitions.INTERNAL_METHODS:
        raise MethodNotFound(f"No matching RPC method[{method}]")
    decoded = decode(method, params)
    row = _state_check(tx, method)
    deadline = decoded.user_action_required_by
    if "user_action_required_by" in FIELDS[method] and deadline is not None:
        if deadline < ctx.now:
            raise InvalidParams("user_action_required_by can not be in the past")
    violations = _bean_violations(method, decoded)
    if violations:
        raise InvalidParams("\n".join(violations))
    plan = Plan(method=method, transaction=tx, params=decoded)
    CHECKS.get(method, _nothing)(plan, ctx)
    if isinstance(row.to, Status):
        plan.next_status = row.to
    # Rule.REFUND_TOTAL and Rule.TRUST_SET were computed by the check; Rule.TRUSTLINE waits
    # for the trustline fact.
    if plan.next_status in ERROR_STATUSES and decoded.message is None:
        raise InvalidParams("message is required")
    return plan


def apply(plan: Plan, facts: Facts, ctx: MachineContext) -> Outcome:
    """The effects of a validated plan on a clone of its transaction. Raises RpcError (a
    missing ledger fact, a generated memo the custody cannot use); nothing is changed then."""
    before = plan.transaction
    out = Outcome(transaction=before.clone())
    tx = out.transaction
    # Cleared by every successful call unless the method accepts it and it was supplied.
    tx.user_action_required_by = None
    if "user_action_required_by" in FIELDS[plan.method]:
        tx.user_action_required_by = plan.params.user_action_required_by
    EFFECTS.get(plan.method, _nothing)(plan, facts, ctx, out)
    row = _state_check(before, plan.method)
    next_status = plan.next_status
    if row.to is Rule.TRUSTLINE:
        trusted = handlers.trusted(plan, facts)
        next_status = Status.PENDING_STELLAR if trusted else Status.PENDING_TRUST
    assert next_status is not None, f"no next status computed for {plan.method}"
    tx.updated_at = ctx.now
    tx.status = next_status
    if next_status in FINAL_STATUSES:
        tx.completed_at = ctx.now
    message = plan.params.message
    if message is not None:
        tx.message = message
    elif before.status in ERROR_STATUSES and next_status not in ERROR_STATUSES:
        tx.message = None  # leaving error/expired clears the error message (spec §2.7)
    return out
