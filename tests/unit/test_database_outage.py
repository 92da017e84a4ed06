"""The worker's database outage gate (scheduler/outage.py) on a hand-driven clock, and the
classification of database errors (store/unavailable.py) on real driver exceptions."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from anchorpay.scheduler.outage import DatabaseOutage
from anchorpay.store.unavailable import database_unavailable, describe, lost_race


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def locked() -> OperationalError:
    """What aiosqlite raises past the busy timeout (the name is set by sqlite3 itself)."""
    orig = sqlite3.OperationalError("database is locked")
    orig.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
    return OperationalError("UPDATE payouts", {}, orig)


def test_one_probe_and_one_line_per_doubling_step(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    gate = DatabaseOutage(0.5, max_s=3.0, clock=clock)
    caplog.set_level(logging.INFO, logger="anchorpay.worker")
    assert gate.may_run() and gate.may_run()  # up: everyone runs
    gate.failed("payouts.dispatch", locked())
    gate.failed("payouts.confirm", locked())  # already under way when it broke: not counted
    delays = []
    for _ in range(5):
        assert not gate.may_run()  # inside the step: everyone skips
        clock.now += gate.delay(gate.failures)
        assert gate.may_run()  # the probe
        assert not gate.may_run()  # one probe at a time
        delays.append(gate.delay(gate.failures))
        gate.failed("observer", locked())
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]  # exponential, capped
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6
    assert lines[0] == (
        "worker: database unavailable (OperationalError: database is locked) in "
        "payouts.dispatch; attempt 1 failed, next in 0.5s"
    )
    assert lines[5].endswith("observer; attempt 6 failed, next in 3s")
    # a job that only read is no proof: the outage goes on
    clock.now += 3
    assert gate.may_run()
    gate.succeeded("payouts.confirm")
    assert gate.down and gate.may_run()  # the next probe may go at once
    gate.succeeded("observer")
    assert not gate.down and gate.may_run()
    assert caplog.records[-1].getMessage() == (
        "worker: database available again after 6 failed attempts"
    )


def test_classification_of_driver_errors() -> None:
    assert database_unavailable(locked())
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    assert database_unavailable(OperationalError("INSERT", {}, full))
    stale = sqlite3.OperationalError("database is locked")
    stale.sqlite_errorname = "SQLITE_BUSY_SNAPSHOT"  # type: ignore[attr-defined]
    assert lost_race(OperationalError("UPDATE", {}, stale))
    assert not database_unavailable(OperationalError("UPDATE", {}, stale))
    assert database_unavailable(ConnectionRefusedError(111, "Connect call failed"))
    syntax = sqlite3.OperationalError("near 'SELEC': syntax error")
    syntax.sqlite_errorname = "SQLITE_ERROR"  # type: ignore[attr-defined]
    assert not database_unavailable(OperationalError("SELEC", {}, syntax))
    assert not database_unavailable(ValueError("no"))
    # an HTTP client's error that wraps an OSError is not the database's
    wrapped = RuntimeError("horizon")
    wrapped.__cause__ = ConnectionRefusedError(111, "refused")
    assert not database_unavailable(wrapped)
    assert describe(locked()) == "OperationalError: database is locked"
