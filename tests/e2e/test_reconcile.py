"""`anchorpay reconcile`: the pure matching section by section (exact outcomes), the ledger
read (paging, filters, dedupe, progress, errors) over a fake ledger client, the usage errors
of the real command, and end to end: real payouts and refunds on the sandbox, then the real
command against that database and that sandbox, before and after a payment made from the
distribution account behind anchorpay's back (SQLite and PostgreSQL; and Fireblocks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from stellar_sdk import Asset, Keypair, TransactionBuilder

from anchorpay import reconcile as rec
from anchorpay import reconcile_report as report_view
from anchorpay.adapters.ledger import (
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
    ObservedPayment,
    PaymentsPage,
)
from anchorpay.domain.reconcile import (
    LedgerPayment,
    Owed,
    PayoutRecord,
    reconcile,
)
from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET
from anchorpay.settings import ConfigError
from support.app import CONFIG_DIR, FakeLedger
from support.payout_fixtures import (
    DIST,
    USDC,
    Env,
    app_settings,
    create_withdrawal,
    funded_deposit,
    onchain_funds_params,
    running_app,
    submit_signed,
)

ANCHORPAY = Path(sys.executable).parent / "anchorpay"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CHANNEL = "GCHANNELXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
USER = "GUSERXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


# --- the pure matching ------------------------------------------------------------------------


def payout(
    pid: str,
    tx: str = "tx1",
    *,
    purpose: str = "payment",
    state: str = "confirmed",
    amount: str = "9",
    fee: str = "0",
    tx_hash: str | None = "",
    created: datetime = T0,
) -> PayoutRecord:
    hash_ = f"h-{pid}" if tx_hash == "" else tx_hash
    return PayoutRecord(
        pid, tx, purpose, state, USDC, Decimal(amount), Decimal(fee), hash_, created
    )


def paid(
    tx_hash: str, amount: str = "9", op: str | None = None, at: datetime = T0
) -> LedgerPayment:
    return LedgerPayment(
        op or f"op-{tx_hash}", tx_hash, DIST, USER, USDC, Decimal(amount), at + timedelta(seconds=5)
    )


def owed(tx: str = "tx1", amount_in: str = "10", amount_out: str = "9") -> dict[str, Owed]:
    return {tx: Owed(tx, Decimal(amount_in), Decimal(amount_out))}


def test_every_confirmed_payout_on_the_ledger_is_ok() -> None:
    payouts = [payout("p1"), payout("p2", "tx2")]
    result = reconcile(payouts, [paid("h-p1"), paid("h-p2")], {**owed(), **owed("tx2")})
    assert [(m.payout.id, m.payment.id, m.in_flight) for m in result.matched] == [
        ("p1", "op-h-p1", False),
        ("p2", "op-h-p2", False),
    ]
    assert (result.missing, result.unexplained, result.overpaid, result.ok) == ((), (), (), True)


def test_a_batch_matches_each_payout_to_its_own_operation() -> None:
    """Three payouts in one envelope (operation batching): each matches the operation at its
    `op_index` (Horizon's operation id is a TOID: 1-based operation number in the low 12
    bits); a fourth operation in that envelope, which no payout names, is unexplained."""
    toid = (77 << 32) | (3 << 12)
    batch = [
        replace(payout(f"p{i}", f"tx{i}", tx_hash="hb", amount=str(i + 1)), op_index=i)
        for i in range(3)
    ]
    ops = [paid("hb", str(i + 1), op=str(toid + i + 1)) for i in range(4)]
    result = reconcile(batch, ops, {})
    assert [(m.payout.id, m.payment.id) for m in result.matched] == [
        (f"p{i}", str(toid + i + 1)) for i in range(3)
    ]
    assert [u.payment.id for u in result.unexplained] == [str(toid + 4)]
    assert (result.missing, result.overpaid) == ((), ())
    # Were op_index not read, one payout would take every operation of the hash.
    assert ops[0].op_index == 0 and ops[3].op_index == 3


def test_confirmed_payout_without_ledger_payment_is_missing() -> None:
    payouts = [
        payout("p1"),
        payout("p2", "tx2"),  # its hash is not on the ledger
        payout("p3", "tx3", tx_hash=None),  # confirmed without a hash at all
        payout("p4", "tx4", state="failed"),  # failed: it never paid, nothing is missing
        payout("p5", "tx5", state="submitted"),  # not on the ledger yet: nothing is missing
    ]
    result = reconcile(payouts, [paid("h-p1")], owed())
    assert [p.id for p in result.missing] == ["p2", "p3"]
    assert not result.ok


def test_since_leaves_older_confirmed_payouts_out_of_missing() -> None:
    old = payout("old", created=T0 - timedelta(days=2))  # its payment fell before the window
    new = payout("new", "tx2")
    result = reconcile([old, new], [], {}, since=T0 - timedelta(days=1))
    assert [p.id for p in result.missing] == ["new"]


def test_ledger_payment_no_payout_explains_is_unexplained() -> None:
    payouts = [
        payout("p1"),
        payout("failed", "tx2", state="failed"),
        payout("flying", "tx3", state="submitting"),
        payout("sent", "tx4", state="submitted"),
    ]
    payments = [
        paid("h-p1"),
        paid("h-stranger", "1"),
        paid("h-failed"),
        paid("h-flying"),
        paid("h-sent"),
    ]
    owe = {**owed(), **owed("tx3"), **owed("tx4")}
    result = reconcile(payouts, payments, owe)
    assert [(m.payout.id, m.in_flight) for m in result.matched] == [
        ("p1", False),
        ("flying", True),  # in flight, on ledger: matched, not unexplained
        ("sent", True),
    ]
    assert [(u.payment.tx_hash, u.reason) for u in result.unexplained] == [
        ("h-stranger", "no payout has this hash"),
        ("h-failed", "payout failed is failed but its hash is on the ledger"),
    ]
    assert (result.missing, result.overpaid, result.ok) == ((), (), False)


def test_in_flight_matches_alone_are_ok() -> None:
    result = reconcile([payout("p1", state="submitted")], [paid("h-p1")], owed())
    assert result.ok and [m.in_flight for m in result.matched] == [True]


def test_a_payment_paid_twice_or_above_what_was_owed_is_over_paid() -> None:
    twice = [paid("h-p1", op="op-a"), paid("h-p1", op="op-b")]  # two operations, one payout
    result = reconcile([payout("p1")], twice, owed())
    (over,) = result.overpaid
    assert (over.transaction_id, over.purpose, over.paid, over.owed) == (
        "tx1",
        "payment",
        Decimal(18),
        Decimal(9),
    )
    assert over.reason == "2 ledger payments for one payment; paid 18 but 9 was owed"
    assert [m.payment.id for m in over.matches] == ["op-a", "op-b"]
    assert not result.ok

    above = reconcile([payout("p1")], [paid("h-p1", "9.0000001")], owed())
    assert [o.reason for o in above.overpaid] == ["paid 9.0000001 but 9 was owed"]
    # amount_out below the payout's amount: the transaction's amount_out is what was owed
    lower = reconcile([payout("p1")], [paid("h-p1", "9")], owed(amount_out="8.5"))
    assert [o.reason for o in lower.overpaid] == ["paid 9 but 8.5 was owed"]
    exact = reconcile([payout("p1")], [paid("h-p1", "9.0000000")], owed())
    assert exact.overpaid == () and exact.ok


def test_refunds_count_their_fees_against_amount_in() -> None:
    refunds = [
        payout("r1", purpose="refund", amount="4", fee="0"),
        payout("r2", purpose="refund", amount="5", fee="1"),
    ]
    payments = [paid("h-r1", "4"), paid("h-r2", "5")]
    assert reconcile(refunds, payments, owed(amount_in="10")).ok  # 4 + 5 + fee 1 = 10

    result = reconcile(refunds, payments, owed(amount_in="9.5"))
    (over,) = result.overpaid
    assert (over.purpose, over.paid, over.owed) == ("refund", Decimal(10), Decimal("9.5"))
    assert over.reason == "refunded (fees included) 10 but 9.5 was owed"


def test_amounts_are_exact_decimals() -> None:
    refunds = [
        payout("r1", purpose="refund", amount="0.1"),
        payout("r2", purpose="refund", amount="0.2"),
    ]
    payments = [paid("h-r1", "0.1"), paid("h-r2", "0.2")]
    assert reconcile(refunds, payments, owed(amount_in="0.3")).ok  # 0.1 + 0.2 == 0.3


def sample_report() -> report_view.Report:
    payouts = [
        payout("p1"),
        payout("p2", "tx2", amount="5"),
        payout("p3", "tx3", state="submitted"),
    ]
    payments = [paid("h-p1"), paid("h-p3"), paid("h-x", "1.50")]
    result = reconcile(payouts, payments, {**owed(), **owed("tx3")})
    return report_view.Report(result, (DIST,), None, len(payments))


def test_table_report() -> None:
    short, t = "USDC:GBBD…FLA5", "2025-03-01T12:00:05Z"
    head = "PAYOUT  TRANSACTION  PURPOSE  AMOUNT  ASSET           HASH  LEDGER TIME"
    assert report_view.as_table(sample_report()).splitlines() == [
        f"reconcile: 3 ledger payments from {DIST} (all history)",
        "",
        "matched: 2 (1 in flight, on ledger)",
        head,
        f"p3      tx3          payment  9       {short}  h-p3  {t}",
        "  ↳ in flight (submitted)",
        "",
        "payouts with no ledger payment: 1",
        head,
        f"p2      tx2          payment  5       {short}  h-p2  -",
        "",
        "ledger payments with no payout: 1",
        head,
        f"-       -            -        1.5     {short}  h-x   {t}",
        f"  ↳ no payout has this hash; paid to {USER}",
        "",
        "over-paid transactions: 0",
        "",
        "result: MISMATCH",
    ]


def test_table_lists_every_payment_of_an_over_paid_transaction() -> None:
    twice = [paid("h-p1", op="op-a"), paid("h-p1", op="op-b")]
    report = report_view.Report(reconcile([payout("p1")], twice, owed()), (DIST,), T0, 2)
    lines = report_view.as_table(report).splitlines()
    assert lines[0] == f"reconcile: 2 ledger payments from {DIST} (since 2025-03-01)"
    start = lines.index("over-paid transactions: 1")
    assert lines[start + 2 :] == [
        "p1      tx1          payment  9       USDC:GBBD…FLA5  h-p1  2025-03-01T12:00:05Z",
        "p1      tx1          payment  9       USDC:GBBD…FLA5  h-p1  2025-03-01T12:00:05Z",
        "  ↳ 2 ledger payments for one payment; paid 18 but 9 was owed",
        "",
        "result: MISMATCH",
    ]


def test_json_report() -> None:
    report = json.loads(report_view.render(sample_report(), "json"))
    assert (report["ok"], report["since"], report["accounts"]) == (False, None, [DIST])
    assert report["payments_read"] == 3
    assert [(m["payout"]["id"], m["in_flight"]) for m in report["matched"]] == [
        ("p1", False),
        ("p3", True),
    ]
    assert report["matched"][0]["payment"] == {
        "id": "op-h-p1",
        "tx_hash": "h-p1",
        "source": DIST,
        "destination": USER,
        "asset": USDC,
        "amount": "9",
        "created_at": "2025-03-01T12:00:05Z",
    }
    assert [p["id"] for p in report["payouts_without_payment"]] == ["p2"]
    (stranger,) = report["payments_without_payout"]
    assert (stranger["payment"]["tx_hash"], stranger["payment"]["amount"]) == ("h-x", "1.5")
    assert (stranger["payout"], stranger["reason"]) == (None, "no payout has this hash")
    assert report["overpaid"] == []


# --- the usage ----------------------------------------------------------------------------------


def test_since_and_format_are_checked() -> None:
    assert rec.parse_since("2025-03-01") == datetime(2025, 3, 1, tzinfo=UTC)
    assert rec.parse_since(None) is None
    for bad in ("2025-13-01", "2025-3-1", "20250301", "yesterday", "2025-02-30"):
        with pytest.raises(ConfigError) as caught:
            rec.parse_since(bad)
        assert str(caught.value) == f"--since must be a date YYYY-MM-DD (got '{bad}')"
    assert (rec.parse_format("table"), rec.parse_format("json")) == ("table", "json")
    with pytest.raises(ConfigError, match=r"^--format must be 'table' or 'json' \(got 'xml'\)$"):
        rec.parse_format("xml")


# --- the ledger read ------------------------------------------------------------------------------


def observed(n: int, source: str = DIST, **kw: Any) -> ObservedPayment:
    values: dict[str, Any] = {
        "id": f"{n}",
        "paging_token": f"{n}",
        "transaction_hash": f"hash{n}",
        "type": "payment",
        "source_account": source,
        "destination_account": USER,
        "asset": USDC,
        "amount": "1.0000000",
        "memo": None,
        "memo_type": "none",
        "successful": True,
        "created_at": T0 + timedelta(minutes=n),
    }
    return ObservedPayment(**{**values, **kw})


class PagedLedger(FakeLedger):
    """`payments` over fixed records per account, paged like Horizon (asc, after cursor)."""

    def __init__(self, records: dict[str, list[ObservedPayment]]) -> None:
        super().__init__()
        self.records = records
        self.calls: list[tuple[str, str | None, int]] = []
        self.errors: list[Exception] = []

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        self.calls.append((account_id, cursor, limit))
        if self.errors:
            raise self.errors.pop(0)
        if account_id not in self.records:
            raise LedgerNotFound(f"account {account_id}")
        rows = self.records[account_id]
        start = 0 if cursor is None else int(cursor) + 1
        page = [r for r in rows if int(r.paging_token) >= start][:limit]
        return PaymentsPage(page, page[-1].paging_token if page else None)


async def test_read_payments_pages_filters_and_dedupes(capsys: pytest.CaptureFixture[str]) -> None:
    dist = [observed(n) for n in range(450)]
    dist += [
        observed(450, source=USER),  # incoming
        observed(451, successful=False),  # failed
        observed(452, type="account_merge"),  # no amount known
        observed(453, type="create_account", asset="stellar:native", amount="5"),
        observed(454, type="path_payment_strict_send"),
    ]
    channel = [observed(7), observed(500, source=CHANNEL), observed(501, type="change_trust")]
    ledger = PagedLedger({DIST: dist, CHANNEL: channel})
    found = await rec.read_payments(
        ledger, [DIST, CHANNEL, "GMISSING"], None, rec.stderr_progress(every=2)
    )
    assert [p.id for p in found] == [str(n) for n in (*range(450), 453, 454, 500)]
    assert found[450].amount == Decimal(5) and found[450].asset == "stellar:native"
    # one paged read per account, 200 a page, oldest first, until a short page
    assert ledger.calls == [
        (DIST, None, 200),
        (DIST, "199", 200),
        (DIST, "399", 200),
        (CHANNEL, None, 200),
        ("GMISSING", None, 200),
    ]
    assert capsys.readouterr().err == f"reconcile: read 400 payments of {DIST[:4]}…{DIST[-4:]}\n"

    since = await rec.read_payments(ledger, [DIST], T0 + timedelta(minutes=449))
    assert [p.id for p in since] == ["449", "453", "454"]


async def test_read_payments_retries_a_transient_error_then_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rec, "RETRY_S", 0)
    ledger = PagedLedger({DIST: [observed(1)]})
    ledger.errors = [LedgerUnavailable("Horizon answered 503 for payments", 503)]
    assert [p.id for p in await rec.read_payments(ledger, [DIST], None)] == ["1"]

    ledger.errors = [LedgerUnavailable("Horizon answered 503 for payments", 503)] * 3
    with pytest.raises(rec.ReconcileError) as caught:
        await rec.read_payments(ledger, [DIST], None)
    assert str(caught.value) == "could not read the ledger: Horizon answered 503 for payments"
    ledger.errors = [LedgerError("Horizon answered 400 Bad Request for payments")]
    with pytest.raises(
        rec.ReconcileError, match=r"^could not read the ledger: Horizon answered 400"
    ):
        await rec.read_payments(ledger, [DIST], None)


# --- the command: usage -----------------------------------------------------------------------


def command_env(**extra: str) -> dict[str, str]:
    """A clean environment for the real command: no inherited settings."""
    prefixes = (
        "PLATFORM_",
        "SECRET_",
        "STELLAR_",
        "CUSTODY_",
        "DATABASE_",
        "HORIZON_",
        "FIREBLOCKS_",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.pop("ANCHORPAY_ENV_FILE", None)
    env.update(ANCHORPAY_CONFIG_DIR=str(CONFIG_DIR), ASSETS_FILE=str(CONFIG_DIR / "assets.toml"))
    env.update(extra)
    return env


async def anchorpay(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The real command in a subprocess, without blocking the loop serving the sandbox."""
    process = await asyncio.create_subprocess_exec(
        str(ANCHORPAY), *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_bad_date_exits_2_with_one_line(tmp_path: Path) -> None:
    env = command_env(STELLAR_NETWORK="sandbox", CUSTODY_TYPE="stellar")
    code, out, err = await anchorpay(["reconcile", "--since", "2025-13-01"], env, tmp_path)
    assert (code, out) == (2, "")
    assert err == "anchorpay: --since must be a date YYYY-MM-DD (got '2025-13-01')\n"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`cli.main` in process (what the command runs) with the command's clean environment."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        monkeypatch.delenv(key)
    env = command_env(STELLAR_NETWORK="sandbox", CUSTODY_TYPE="stellar")
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["--format", "xml"], {}, "--format must be 'table' or 'json' (got 'xml')"),
        (
            [],
            {"CUSTODY_TYPE": "none"},
            "reconcile needs CUSTODY_TYPE=stellar or fireblocks (custody is none)",
        ),
        (
            [],
            {"STELLAR_CHANNEL_SECRETS": "SNOTASECRET"},
            # refused with the settings, before reconcile reads it
            "STELLAR_CHANNEL_SECRETS (entry 1) is not a valid Stellar secret seed "
            "(56 characters starting with S)",
        ),
        (
            [],
            {"DATABASE_URL": "sqlite+aiosqlite:///nowhere/a.db"},
            "the database nowhere/a.db does not exist",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    extra: dict[str, str],
    message: str,
) -> None:
    from anchorpay.cli import main

    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    assert main(["reconcile", *args]) == 2
    assert capsys.readouterr() == ("", f"anchorpay: {message}\n")
    assert not (cli_env / "nowhere").exists()  # a SQLite file that does not exist is not made


def test_an_unreachable_ledger_exits_1_with_one_line(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from anchorpay.cli import main
    from anchorpay.store import migrate

    migrate.upgrade_sync(os.environ["DATABASE_URL"])
    monkeypatch.setenv("HORIZON_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(rec, "RETRY_S", 0)
    assert main(["reconcile"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    reached = f"Horizon could not be reached for payments of {DIST}"
    assert err.startswith(f"anchorpay: reconcile: could not read the ledger: {reached}")


# --- end to end -------------------------------------------------------------------------------


async def deposit_paid(env: Env, user: Keypair, amount: str) -> str:
    tx_id = await funded_deposit(env, user.public_key, amount_out=amount)
    await env.ok("do_stellar_payment", {"transaction_id": tx_id})
    assert await env.until_status(tx_id, "completed") == "completed"
    return tx_id


async def withdrawal_refunded(env: Env, user: Keypair) -> str:
    """The user pays 10 USDC for a withdrawal; it is refunded on the ledger: 4, then 5 + 1 fee."""
    tx_id: str = (await create_withdrawal(env.client, user.public_key))["id"]
    await env.ok("request_onchain_funds", onchain_funds_params(tx_id))
    received = await env.pay_distribution(user, "10")
    await env.ok(
        "notify_onchain_funds_received",
        {
            "transaction_id": tx_id,
            "stellar_transaction_id": received,
            "amount_in": {"amount": "10"},
        },
    )
    for amount, fee, status in (("4", "0", "pending_anchor"), ("5", "1", "refunded")):
        refund = {
            "amount": {"amount": amount, "asset": USDC},
            "amount_fee": {"amount": fee, "asset": USDC},
        }
        await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": refund})
        assert await env.until_status(tx_id, status) == status
    return tx_id


def sections(table: str) -> list[str]:
    """The four sections of the table, by their header lines."""
    titles = ("matched:", "payouts with no ledger payment:", "ledger payments with no payout:")
    titles += ("over-paid transactions:", "result:")
    found: list[list[str]] = []
    for line in table.splitlines():
        if line.startswith(titles):
            found.append([])
        if found:
            found[-1].append(line)
    return ["\n".join(lines).strip() for lines in found]


@contextlib.asynccontextmanager
async def services(settings: Any) -> AsyncIterator[tuple[Any, Any]]:
    """The CLI's own pieces: a session factory on the database and the Horizon client."""
    from anchorpay.app import default_ledger
    from anchorpay.store.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    ledger = default_ledger(settings)
    try:
        yield session_factory(engine), ledger
    finally:
        await ledger.aclose()
        await engine.dispose()


def horizon_of(env: Env) -> str:
    return f"{str(env.ledger.base_url).rstrip('/')}/horizon"


async def test_reconcile_after_real_payouts_then_a_payment_behind_its_back(
    tmp_path: Path, db_url: str
) -> None:
    async with running_app(tmp_path, database_url=db_url) as env:
        user = await env.account()
        deposit = await deposit_paid(env, user, "10")  # also the USDC the user withdraws
        withdrawal = await withdrawal_refunded(env, user)
        hashes = {p["tx_hash"] for tx in (deposit, withdrawal) for p in await env.payouts(tx)}
        assert len(hashes) == 3

        env_vars = command_env(
            DATABASE_URL=db_url, STELLAR_NETWORK="sandbox", HORIZON_URL=horizon_of(env),
            CUSTODY_TYPE="stellar",
        )  # fmt: skip
        code, out, err = await anchorpay(["reconcile", "--format", "json"], env_vars, tmp_path)
        assert (code, err) == (0, ""), out + err
        report_json = json.loads(out)
        assert (report_json["ok"], report_json["accounts"]) == (True, [DIST])
        pairs = {(m["payout"]["tx_hash"], m["payment"]["tx_hash"]) for m in report_json["matched"]}
        assert len(report_json["matched"]) == 3 and pairs == {(h, h) for h in hashes}
        for empty in ("payouts_without_payment", "payments_without_payout", "overpaid"):
            assert report_json[empty] == []

        # The same function the CLI calls, in process: the pairs, and --since.
        settings = app_settings(
            tmp_path, database_url=db_url, horizon_url=horizon_of(env), custody_type="stellar"
        )
        async with services(settings) as (sessions, ledger):
            sources = rec.sources_of(settings)
            assert sources.accounts == (DIST,)
            report = await rec.run(sources, sessions, ledger)
            assert report.ok and {m.payout.tx_hash for m in report.result.matched} == hashes
            assert {m.payment.tx_hash for m in report.result.matched} == hashes
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            assert len((await rec.run(sources, sessions, ledger, since=today)).result.matched) == 3
            later = await rec.run(sources, sessions, ledger, since=today + timedelta(days=1))
            assert (later.ok, later.result.matched, later.payments) == (True, (), 0)

        # A payment from the distribution account that anchorpay did not make.
        def one_usdc(builder: TransactionBuilder) -> None:
            builder.append_payment_op(user.public_key, Asset("USDC", USDC.split(":")[2]), "1")

        dist = Keypair.from_secret(SANDBOX_DISTRIBUTION_SECRET)
        stray = await submit_signed(env.ledger, dist, one_usdc, env.close_ledger)

        code, out, err = await anchorpay(["reconcile"], env_vars, tmp_path)
        assert (code, err) == (1, ""), out + err
        matched, missing, unexplained, over, result = sections(out)
        assert (matched, missing, over, result) == (
            "matched: 3 (0 in flight, on ledger)",
            "payouts with no ledger payment: 0",
            "over-paid transactions: 0",
            "result: MISMATCH",
        )
        title, header, row, note = unexplained.splitlines()
        assert (title, header.split()[:2]) == (
            "ledger payments with no payout: 1",
            ["PAYOUT", "TRANSACTION"],
        )
        assert row.split()[:6] == ["-", "-", "-", "1", "USDC:GBBD…FLA5", stray]
        assert note == f"  ↳ no payout has this hash; paid to {user.public_key}"


async def test_reconcile_with_fireblocks(tmp_path: Path) -> None:
    from anchorpay.sandbox.fireblocks import SANDBOX_FIREBLOCKS_VAULT_SECRET
    from support.fireblocks_flow import VAULT, fireblocks_app

    async with fireblocks_app(tmp_path) as env:
        user = await env.account()
        tx_id = await deposit_paid(env, user, "9")
        (fb_payout,) = await env.payouts(tx_id)
        assert (fb_payout["adapter"], fb_payout["state"]) == ("fireblocks", "confirmed")
        port = env.client.base_url.port
        settings = app_settings(tmp_path, platform_server_port=port, custody_type="fireblocks")
        async with services(settings) as (sessions, ledger):
            sources = rec.sources_of(settings)
            report = await rec.run(sources, sessions, ledger)
            assert (report.ok, report.accounts) == (True, (VAULT,))
            (match,) = report.result.matched
            assert (match.payout.id, match.payment.tx_hash) == (
                fb_payout["id"],
                fb_payout["tx_hash"],
            )

            def one_usdc(builder: TransactionBuilder) -> None:
                builder.append_payment_op(user.public_key, Asset("USDC", USDC.split(":")[2]), "1")

            vault = Keypair.from_secret(SANDBOX_FIREBLOCKS_VAULT_SECRET)
            stray = await submit_signed(env.ledger, vault, one_usdc, env.close_ledger)
            report = await rec.run(sources, sessions, ledger)
            assert not report.ok and len(report.result.matched) == 1
            assert [u.payment.tx_hash for u in report.result.unexplained] == [stray]
