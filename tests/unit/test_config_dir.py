"""Where the configuration is read from: ANCHORPAY_CONFIG_DIR, else ./config, else the
defaults installed with anchorpay (so the command runs from any directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorpay.settings import Settings, config_dir, load_settings
from support.app import CONFIG_DIR

SETTING_NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working directory and no setting in the environment."""
    for name in [*SETTING_NAMES, "ANCHORPAY_ENV_FILE", "ANCHORPAY_CONFIG_DIR"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_a_config_folder_the_packaged_defaults_are_read() -> None:
    # the editable install maps anchorpay.defaults to the repository's config/
    assert config_dir().resolve() == CONFIG_DIR.resolve()
    settings = load_settings()
    assert settings.assets_file.resolve() == (CONFIG_DIR / "assets.toml").resolve()
    assert settings.custody_path().resolve() == (CONFIG_DIR / "custody.toml").resolve()
    assert settings.worker_tick_s == 1.0  # scheduler.toml's [settings]
    assert [a.id for a in settings.load_assets().assets] == [
        "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5",
        "stellar:native",
        "iso4217:USD",
    ]


def test_a_config_folder_in_the_working_directory_wins(bare: Path) -> None:
    (bare / "config").mkdir()
    (bare / "config" / "scheduler.toml").write_text("[settings]\nworker_tick_s = 3.5\n")
    assert config_dir() == Path("config")
    settings = load_settings()
    assert settings.assets_file == Path("config/assets.toml")
    assert settings.custody_path() == Path("config/custody.toml")
    assert settings.worker_tick_s == 3.5


def test_the_variable_wins_over_both(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bare / "config").mkdir()
    chosen = bare / "chosen"
    chosen.mkdir()
    (chosen / "scheduler.toml").write_text("[settings]\nworker_tick_s = 4.5\n")
    monkeypatch.setenv("ANCHORPAY_CONFIG_DIR", str(chosen))
    assert config_dir() == chosen
    settings = load_settings()
    assert (settings.assets_file, settings.worker_tick_s) == (chosen / "assets.toml", 4.5)
    monkeypatch.setenv("ASSETS_FILE", str(CONFIG_DIR / "assets.toml"))
    assert load_settings().assets_file == CONFIG_DIR / "assets.toml"
