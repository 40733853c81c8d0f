"""Benchmarks, the evaluation suite and the training mix as Dagster assets, in process."""

import json

import dagster as dg
import datasets
import duckdb
import pytest

from kala_assets.definitions import defs

ALL = [*defs.assets, *defs.asset_checks]


def run(warehouse, mix_size=300):
    """The whole graph with its checks, on small sizes."""
    ops = {
        "constitutional_examples": {"config": {"size": 800}},
        "ethics_eval_suite": {"config": {"heldout_size": 200}},
        "training_mix": {"config": {"size": mix_size}},
    }
    return dg.materialize(ALL, resources={"warehouse": warehouse}, run_config={"ops": ops})


def rows(warehouse, sql):
    with duckdb.connect(str(warehouse.database_path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def built(mini_mirror, warehouse):
    result = run(warehouse)
    return warehouse, result


def test_whole_graph_on_a_small_mirror(built):
    warehouse, result = built
    assert result.success
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations() if not e.passed]
    # the mini mirror is deliberately not the published size: those checks warn, nothing else fails
    assert {name for _, name in failed} <= {"row_count_matches_published", "size_and_balance"}
    assert rows(warehouse, "SELECT count(*) FROM benchmark_advbench") == [(5,)]
    assert rows(warehouse, "SELECT count(*) FROM benchmark_math") == [(0,)]
    assert rows(warehouse, "SELECT count(*) FROM security_code_tasks")[0][0] >= 100
    columns = {r[0] for r in rows(warehouse, "DESCRIBE training_mix")}
    assert {"category", "source", "split", "messages"} <= columns
    categories = dict(rows(warehouse, "SELECT category, count(*) FROM training_mix GROUP BY 1"))
    assert set(categories) == {"ethics", "coding", "math", "general"}
    messages = json.loads(rows(warehouse, "SELECT messages FROM training_mix LIMIT 1")[0][0])
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "assistant"
    for split in ("train", "val", "test"):
        loaded = datasets.load_dataset("json", data_files=str(warehouse.root / "training_mix" / f"{split}.jsonl"),
                                       split="train")
        assert len(loaded) == rows(warehouse, f"SELECT count(*) FROM training_mix WHERE split = '{split}'")[0][0]
    mix_event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == ["training_mix"])
    metadata = mix_event.materialization.metadata
    assert metadata["limiting_source"].value in ("coding", "general", "math", "none")
    assert "MATH is unavailable" in metadata["notes"].value
    assert "| train |" in metadata["token_lengths"].value


def test_planted_eval_overlap_fails_the_blocking_check(built):
    warehouse, _ = built
    prompt = rows(warehouse, "SELECT prompt FROM ethics_eval_suite WHERE source = 'xstest_safe' LIMIT 1")[0][0]
    planted = json.dumps([{"role": "user", "content": prompt}, {"role": "assistant", "content": "sure"}])
    with duckdb.connect(str(warehouse.database_path)) as con:
        con.execute("INSERT INTO training_mix SELECT category, source, 'planted', 'planted:1', 0, 'train', ? "
                    "FROM training_mix LIMIT 1", [planted])
    result = dg.materialize(ALL, resources={"warehouse": warehouse},
                            selection=dg.AssetSelection.checks_for_assets(dg.AssetKey("training_mix")),
                            raise_on_error=False)
    outcome = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not outcome["no_eval_overlap"].passed
    assert "planted:1" in outcome["no_eval_overlap"].description


def test_without_mirror_and_hub_benchmarks_fail_clearly_and_nothing_else_is_harmed(built, monkeypatch):
    warehouse, _ = built
    before = rows(warehouse, "SELECT count(*) FROM benchmark_gsm8k")
    monkeypatch.delenv("KALA_BENCHMARK_MIRROR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = dg.materialize(ALL, resources={"warehouse": warehouse},
                            selection=["benchmark_gsm8k", "constitutional_examples"],
                            run_config={"ops": {"constitutional_examples": {"config": {"size": 100}}}},
                            raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "benchmark_gsm8k"
    error = failure.step_failure_data.error
    text = error.message + (error.cause.message if error.cause else "")
    assert "Set KALA_BENCHMARK_MIRROR" in text
    assert rows(warehouse, "SELECT count(*) FROM benchmark_gsm8k") == before  # earlier table intact
    assert rows(warehouse, "SELECT count(*) FROM constitutional_examples") == [(100,)]  # other assets still run


def test_bad_mix_weights_fail_before_writing(built):
    warehouse, _ = built
    before = rows(warehouse, "SELECT count(*) FROM training_mix")
    result = dg.materialize(ALL, resources={"warehouse": warehouse}, selection=["training_mix"],
                            run_config={"ops": {"training_mix": {"config": {"weights": {"ethics": 1, "poetry": 1}}}}},
                            raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "unknown mix categories ['poetry']" in error.message + (error.cause.message if error.cause else "")
    assert rows(warehouse, "SELECT count(*) FROM training_mix") == before
