"""The README's walkthroughs run as they stand (issue 16): each shell block marked
`<!-- walkthrough: ... -->` is run by bash, with `set -euo pipefail`, against `anchorpay serve`
started in a directory outside the repository (no ./config: the packaged defaults), the way a
new user would after `make serve`. Only the server's address is changed (a free port)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from support.app import REPO
from support.serving import bare_env, serving

ANCHORPAY = Path(sys.executable).parent / "anchorpay"
README = REPO / "README.md"
HASH = re.compile(r"[0-9a-f]{64}")


def walkthrough(name: str) -> str:
    """The shell block after `<!-- walkthrough: name -->`."""
    text = README.read_text()
    marker = text.index(f"<!-- walkthrough: {name} -->")
    start = text.index("```sh\n", marker) + len("```sh\n")
    return text[start : text.index("```\n", start)]


def test_the_withdrawal_walkthrough_runs_as_written(tmp_path: Path) -> None:
    where = tmp_path / "new-user"
    where.mkdir()
    (where / ".venv").symlink_to(REPO / ".venv")  # what `make serve` leaves beside the user
    script = walkthrough("withdrawal")
    assert "H=localhost:8085\n" in script
    # Ledgers every second, not the default 5 s: each `anchorpay sandbox pay` waits for the
    # ledger that applies its payment (the script's `sleep 5` still covers the observer).
    env = bare_env(LOG_FORMAT="text", OBSERVER_INTERVAL_S="0.5", SANDBOX_LEDGER_CLOSE_S="1")
    with serving([str(ANCHORPAY)], where, env) as base:
        port = base.rsplit(":", 1)[1]
        ran = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script.replace(":8085", f":{port}", 1)],
            cwd=where,
            env=env | {"PLATFORM_SERVER_PORT": port},  # `anchorpay sandbox pay` finds the server
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        funding, status, credited = ran.stdout.split()
        assert HASH.fullmatch(funding) and HASH.fullmatch(credited) and funding != credited
        assert status == "pending_anchor"
        # The ledger holds the wallet's payment under that hash, once.
        found = httpx.get(f"{base}/sandbox/horizon/transactions/{credited}", timeout=5)
        assert found.status_code == 200 and found.json()["successful"] is True
        listed = httpx.get(
            f"{base}/transactions", params={"statuses": "pending_anchor"}, timeout=5
        ).json()["records"]
        assert [[s["id"] for s in t["stellar_transactions"]] for t in listed] == [[credited]]
