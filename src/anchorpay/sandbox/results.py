"""stellar-core's TransactionResult XDR for a refusal, as Horizon puts it in `result_xdr`
(synchronous submit) and `errorResultXdr` (async submit)."""

from __future__ import annotations

from stellar_sdk import xdr

# The sandbox's code names that differ from stellar-core's enum (tx_bad_seq -> txBAD_SEQ).
_RENAMED = {"tx_no_source_account": "txNO_ACCOUNT"}


def result_xdr(transaction_code: str, fee_charged: int = 0) -> str:
    """The result of a refused (or, with `tx_failed`, applied and failed) transaction.
    Operation results are not spelled out: `result_codes` carries them by name."""
    name = _RENAMED.get(transaction_code, "tx" + transaction_code.removeprefix("tx_").upper())
    code = getattr(xdr.TransactionResultCode, name, xdr.TransactionResultCode.txINTERNAL_ERROR)
    failed = code == xdr.TransactionResultCode.txFAILED
    result = xdr.TransactionResult(
        fee_charged=xdr.Int64(fee_charged),
        result=xdr.TransactionResultResult(code=code, results=[] if failed else None),
        ext=xdr.TransactionResultExt(0),
    )
    return str(result.to_xdr())
