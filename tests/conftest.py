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


@pytest.fixture(scope="session")
def decision_run_files(tmp_path_factory):
    """A training run's inputs on a small scale: train.jsonl (64 generated ethics examples whose
    targets start with a decision token) and decisions_{train,val}.jsonl (decision rows)."""
    import json

    from kala_lib.decision_corpus import decision_prompts
    from kala_lib.decision_data import DecisionRowSettings, build_decision_rows
    from kala_lib.mixing import Decontaminator, ethics_items, with_decision_token

    folder, system = tmp_path_factory.mktemp("decision_run"), "You are KALA."
    records = [e.to_record() for e in generate_examples(160, seed=5)]
    items = [with_decision_token(i) for i in ethics_items(records, system)]
    (folder / "train.jsonl").write_text("".join(json.dumps({"messages": json.loads(i.messages_json())}) + "\n"
                                                for i in items[:64]))
    rows, _ = build_decision_rows([], records, Decontaminator(), system, DecisionRowSettings(), decision_prompts()[:80])
    keep = ("key", "group", "split", "source", "label", "law", "style", "decision", "messages")
    for split in ("train", "val"):
        (folder / f"decisions_{split}.jsonl").write_text(
            "".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in rows if r["split"] == split))
    return folder
