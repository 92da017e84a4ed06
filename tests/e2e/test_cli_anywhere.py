"""`anchorpay` run as a new user runs it, away from the repository: no ./config, no
settings in the environment. The default configuration comes with the package (the
editable install here, and a wheel built from the sources, installed on its own)."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from support.app import CONFIG_DIR, REPO, USDC, USER
from support.serving import bare_env, serving

ANCHORPAY = Path(sys.executable).parent / "anchorpay"
DEFAULT_FILES = ("assets.toml", "custody.toml", "scheduler.toml")


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory outside the repository."""
    where = tmp_path / "elsewhere"
    where.mkdir()
    assert not where.is_relative_to(REPO)
    return where


def assert_serves_the_default_assets(base: str) -> None:
    """A USDC deposit is accepted: the packaged assets.toml was read."""
    health = httpx.get(f"{base}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    created = httpx.post(
        f"{base}/transactions",
        json={
            "sep": "24",
            "kind": "deposit",
            "amount_expected": {"asset": USDC, "amount": "10"},
            "destination_account": USER,
        },
        timeout=5,
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "incomplete"
    unknown = httpx.post(
        f"{base}/transactions",
        json={
            "sep": "24",
            "kind": "deposit",
            "amount_expected": {"asset": "stellar:EURC:" + USER, "amount": "10"},
            "destination_account": USER,
        },
        timeout=5,
    )
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": f"amount_expected.asset stellar:EURC:{USER} is not a configured asset"
    }


def test_version(elsewhere: Path) -> None:
    result = subprocess.run(
        [str(ANCHORPAY), "--version"],
        cwd=elsewhere,
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"anchorpay {importlib.metadata.version('anchorpay')}\n"


def test_serve_runs_from_a_directory_without_config(elsewhere: Path) -> None:
    with serving([str(ANCHORPAY)], elsewhere, bare_env()) as base:
        assert_serves_the_default_assets(base)
    # the default database is relative to the working directory, as documented
    assert (elsewhere / "data" / "anchorpay.db").is_file()


def test_a_local_config_folder_still_wins(elsewhere: Path) -> None:
    """./config, when there is one, is read instead of the packaged defaults."""
    local = elsewhere / "config"
    local.mkdir()
    (local / "assets.toml").write_text('[[assets]]\nid = "iso4217:USD"\nsignificant_decimals = 2\n')
    with serving([str(ANCHORPAY)], elsewhere, bare_env()) as base:
        refused = httpx.post(
            f"{base}/transactions",
            json={
                "sep": "24",
                "kind": "deposit",
                "amount_expected": {"asset": USDC},
                "destination_account": USER,
            },
            timeout=5,
        )
        assert refused.status_code == 400, refused.text
        assert refused.json() == {
            "error": f"amount_expected.asset {USDC} is not a configured asset"
        }


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the sources (so the build leaves nothing in the checkout)."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("src", "adapters", "scheduler", "config"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("anchorpay-*.whl")
    return wheel


def test_the_wheel_carries_the_default_config_and_serves_from_anywhere(
    tmp_path: Path, elsewhere: Path
) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        for name in DEFAULT_FILES:
            assert archive.read(f"anchorpay/defaults/{name}") == (CONFIG_DIR / name).read_bytes()

    # installed on its own (its dependencies are this venv's), ahead of the editable install
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = bare_env(PYTHONPATH=str(site))
    where = subprocess.run(
        [sys.executable, "-c", "from anchorpay.settings import config_dir; print(config_dir())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert where.stdout == f"{site / 'anchorpay' / 'defaults'}\n"
    with serving([sys.executable, "-m", "anchorpay.cli"], elsewhere, env) as base:
        assert_serves_the_default_assets(base)
