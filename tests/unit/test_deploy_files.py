"""The dashboard and alert rules under deploy/ name only metrics anchorpay exports (a
renamed metric would silently empty a panel or never fire an alert)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from anchorpay.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\banchorpay_[a-z_]+\b")


def exported() -> set[str]:
    """Every sample name the registry can produce (counters' _total, histograms' parts)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def test_every_metric_the_alerts_and_dashboard_name_exists() -> None:
    alerts = (DEPLOY / "alerts.yml").read_text()
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = set(NAME.findall(alerts)) | {n for e in exprs for n in NAME.findall(e)}
    assert len(named) >= 12  # the files were read and parsed
    assert named - exported() == set()


def test_the_checker_sees_a_missing_metric() -> None:
    assert "anchorpay_payouts_stuck_total" not in exported()
    assert "anchorpay_payout_submit_to_confirm_seconds_bucket" in exported()
