"""Shared test settings."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's real napari-tmunet settings."""
    monkeypatch.setenv("NAPARI_TMUNET_CONFIG_DIR", str(tmp_path_factory.mktemp("settings")))
