"""The layer contract ([tool.importlinter] in pyproject.toml, `make lint-imports`) can fail:
run over a copy of the package tree with one deliberately wrong import, it names it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def mirror(root: Path) -> Path:
    """The package tree `make mirror` builds (symlinks), with a real `domain` folder so a
    file can be added to it."""
    package = root / "anchorpay"
    package.mkdir()
    for entry in (REPO / "src" / "anchorpay").iterdir():
        if entry.name != "domain":
            (package / entry.name).symlink_to(entry)
    (package / "adapters").symlink_to(REPO / "adapters")
    (package / "scheduler").symlink_to(REPO / "scheduler")
    domain = package / "domain"
    domain.mkdir()
    for entry in (REPO / "src" / "anchorpay" / "domain").iterdir():
        (domain / entry.name).symlink_to(entry)
    return package


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contract_holds_and_a_wrong_import_breaks_it(tmp_path: Path) -> None:
    package = mirror(tmp_path)
    kept = lint(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    (package / "domain" / "shortcut.py").write_text(
        '"""A domain module reaching up into the store: what the layers forbid."""\n'
        "from anchorpay.store import payouts  # noqa: F401\n"
    )
    broken = lint(tmp_path)
    assert broken.returncode == 1
    assert "anchorpay.domain is not allowed to import anchorpay.store" in broken.stdout
    assert "anchorpay.domain.shortcut -> anchorpay.store.payouts" in broken.stdout
