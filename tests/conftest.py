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


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One tokenizer/model cache for the whole session (the GGUF file is parsed once)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path, monkeypatch, model_cache):
    """No test may write to the project's data/ or read the real benchmark mirror by accident."""
    monkeypatch.setenv("KALA_DATA_DIR", str(tmp_path / "default-data"))
    monkeypatch.setenv("KALA_MODEL_CACHE", str(model_cache))
    monkeypatch.delenv("KALA_BENCHMARK_MIRROR", raising=False)
    monkeypatch.delenv("KALA_WAREHOUSE", raising=False)
    monkeypatch.delenv("KALA_MODEL_PROFILES", raising=False)


@pytest.fixture
def mini_mirror(tmp_path, monkeypatch):
    """A small mirror written by the test, selected through KALA_BENCHMARK_MIRROR."""
    from tests.mini_mirror import write_mini_mirror

    root = write_mini_mirror(tmp_path / "mirror")
    monkeypatch.setenv("KALA_BENCHMARK_MIRROR", str(root))
    return root
