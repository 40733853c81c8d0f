"""Shared fixtures: small generated datasets and a warehouse on a temporary path."""

from __future__ import annotations

import pytest

from kala_assets.resources import KalaWarehouse
from kala_lib.ethics_generator import generate_examples


@pytest.fixture(scope="session")
def base_set():
    """The seed's base plan: 800 examples."""
    return generate_examples(800, seed=42)


@pytest.fixture(scope="session")
def large_set():
    return generate_examples(10_000, seed=42)


@pytest.fixture
def warehouse(tmp_path) -> KalaWarehouse:
    return KalaWarehouse(data_dir=str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """No test may write to the project's data/ by accident."""
    monkeypatch.setenv("KALA_DATA_DIR", str(tmp_path / "default-data"))
