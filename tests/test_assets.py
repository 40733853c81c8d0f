"""The Dagster layer, in process, against a warehouse on a temporary path."""

from pathlib import Path

import dagster as dg
import datasets
import duckdb
import pytest

from kala_assets.assets.constitutional import EXAMPLES_TABLE, constitutional_examples, constitutional_exports
from kala_assets.checks import constitutional_checks
from kala_assets.definitions import defs
from kala_assets.resources import KalaWarehouse, kala_resources
from kala_lib.storage import StorageError

REQUIRED_COLUMNS = {
    "example_id", "example_type", "law_category", "difficulty", "prompt", "turns",
    "response_ethical", "critique", "principle", "tags",
}


def run_config(size=800, seed=42):
    return dg.RunConfig(ops={"constitutional_examples": {"config": {"size": size, "seed": seed}}})


def materialize(warehouse, size=800, seed=42, selection=None, raise_on_error=True, instance=None, config=True):
    return dg.materialize(
        [constitutional_examples, constitutional_exports, *constitutional_checks],
        resources=kala_resources(warehouse),
        run_config=run_config(size, seed) if config else None,
        selection=selection,
        raise_on_error=raise_on_error,
        instance=instance,
    )


def table_rows(warehouse, sql=f"SELECT count(*) FROM {EXAMPLES_TABLE}"):
    with duckdb.connect(str(warehouse.database_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def failure_text(result) -> str:
    """The step failure's message with its causes (Dagster wraps the user's exception)."""
    error, parts = result.get_step_failure_events()[0].step_failure_data.error, []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def data_version(result, asset="constitutional_examples"):
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset])
    return event.materialization.tags["dagster/data_version"]


def test_definitions_load():
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} >= {
        "constitutional_examples",
        "constitutional_exports",
    }


def test_materialize_writes_table_exports_and_passes_checks(warehouse):
    result = materialize(warehouse)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "difficulty_mix": True, "type_mix": True, "law_coverage": True, "unique_prompts": True,
        "structurally_complete": True, "harmful_drafts_non_operational": True,
    }
    assert table_rows(warehouse) == [(800,)]
    with duckdb.connect(str(warehouse.database_path), read_only=True) as con:
        columns = {row[0] for row in con.execute(f"DESCRIBE {EXAMPLES_TABLE}").fetchall()}
    assert REQUIRED_COLUMNS <= columns

    metadata = next(iter(result.get_asset_materialization_events())).materialization.metadata
    assert metadata["dagster/row_count"].value == 800
    assert metadata["type_harmful_blocked"].value == 500
    assert metadata["difficulty_easy"].value == 320
    assert "Law 1 (Individual Safety & Dignity)" in metadata["counts"].value

    exports = warehouse.root / "exports"
    for name in ("constitutional_alpaca.json", "constitutional_chat.jsonl", "constitutional_completion.jsonl"):
        loaded = datasets.load_dataset("json", data_files=str(exports / name), split="train")
        assert len(loaded) == 800


def test_data_version_changes_only_with_content(warehouse):
    first = data_version(materialize(warehouse, seed=1))
    again = data_version(materialize(warehouse, seed=1))
    other = data_version(materialize(warehouse, seed=2))
    assert first == again
    assert first != other


def test_failing_check_blocks_exports(warehouse, tmp_path):
    """A blocking check that fails stops the downstream exports from being (re)written."""
    materialize(warehouse, selection=[constitutional_examples.key])  # table only, no checks
    with duckdb.connect(str(warehouse.database_path)) as con:
        con.execute(f"UPDATE {EXAMPLES_TABLE} SET difficulty = 'easy' WHERE difficulty = 'hard'")
    selection = dg.AssetSelection.checks_for_assets(constitutional_examples) | dg.AssetSelection.assets(
        constitutional_exports
    )
    result = materialize(warehouse, selection=selection, raise_on_error=False, config=False)
    assert not result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "difficulty_mix" in failed
    assert not (warehouse.root / "exports").exists()


@pytest.mark.parametrize("size", [0, -3])
def test_bad_size_fails_clearly_and_keeps_the_previous_table(warehouse, size):
    materialize(warehouse, size=800)
    result = materialize(warehouse, size=size, raise_on_error=False)
    assert not result.success
    assert "size must be positive" in failure_text(result)
    assert table_rows(warehouse) == [(800,)]


def test_wrong_config_type_is_rejected_before_running(warehouse):
    with pytest.raises(dg.DagsterInvalidConfigError, match="size"):
        dg.materialize(
            [constitutional_examples],
            resources=kala_resources(warehouse),
            run_config={"ops": {"constitutional_examples": {"config": {"size": "lots"}}}},
        )


def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path):
    """An unwritable data dir (here: its parent is a regular file, unwritable even for root)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = materialize(KalaWarehouse(data_dir=str(blocker / "data")), raise_on_error=False)
    assert not result.success
    message = failure_text(result)
    assert "not writable" in message and "KALA_DATA_DIR" in message


def test_failed_write_leaves_previous_table_intact(warehouse):
    """The incoming rows stop arriving half-way (a crashed producer): the old table survives."""
    import pyarrow as pa

    materialize(warehouse, size=800)
    schema = pa.schema([("example_id", pa.string())])

    def batches():
        yield pa.record_batch([pa.array([f"x{i}" for i in range(5000)])], schema=schema)
        raise OSError("producer crashed")

    with pytest.raises(Exception, match="producer crashed"):
        warehouse.replace_table(EXAMPLES_TABLE, pa.RecordBatchReader.from_batches(schema, batches()))
    assert table_rows(warehouse) == [(800,)]
    assert table_rows(warehouse, f"SELECT count(*) FROM {EXAMPLES_TABLE} WHERE critique IS NOT NULL") == [(800,)]


def test_kala_data_dir_relocates_the_warehouse(tmp_path, monkeypatch):
    monkeypatch.setenv("KALA_DATA_DIR", str(tmp_path / "elsewhere"))
    warehouse = KalaWarehouse()
    assert warehouse.database_path == (tmp_path / "elsewhere" / "kala.duckdb").resolve()
    materialize(warehouse, size=200, selection=[constitutional_examples.key])
    assert (tmp_path / "elsewhere" / "kala.duckdb").exists()


def test_reading_a_missing_table_names_the_asset(warehouse):
    with pytest.raises(StorageError, match="materialize the asset 'constitutional_examples'"):
        warehouse.read_records(EXAMPLES_TABLE)


def test_kala_warehouse_moves_the_database_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("KALA_DATA_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("KALA_WAREHOUSE", str(tmp_path / "shared" / "warehouse.duckdb"))
    warehouse = KalaWarehouse()
    assert warehouse.database_path == (tmp_path / "shared" / "warehouse.duckdb").resolve()
    materialize(warehouse, size=200, selection=[constitutional_examples.key])
    assert (tmp_path / "shared" / "warehouse.duckdb").exists()
    assert not (tmp_path / "artifacts" / "kala.duckdb").exists()
    monkeypatch.setenv("KALA_WAREHOUSE", "md:kala")
    assert KalaWarehouse().database_path == "md:kala"  # MotherDuck: passed to DuckDB as is


@pytest.mark.parametrize("name", ["cpu_default.yaml", "smoke.yaml", "pythia_6_9b_gpu.yaml"])
def test_run_config_files_are_valid_for_the_whole_graph(name):
    """Every documented run-config file validates against the asset graph's config schema."""
    import yaml

    from kala_assets.definitions import defs

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" / name).read_text())
    validated = dg.validate_run_config(defs.resolve_implicit_global_asset_job_def(), config)
    assert {"lora_adapter", "training_mix"} <= set(validated["ops"])


def test_dagster_training_config_mirrors_the_trainer_config():
    """LoraTrainingConfig (Dagster's pydantic class) repeats TrainConfig's fields: a trainer option
    added to one must be added to the other (or listed here as set by the asset), with the same default."""
    import dataclasses

    from kala_assets.assets.training import LoraTrainingConfig
    from kala_lib.training import TrainConfig

    set_by_asset = {"output_dir", "train_file", "val_file", "ethics_prompts", "model_profile",  # profile: base_model
                    "decision_tokens", "decision_file", "decision_val_file"}  # from training_mix and decision_rows
    internal = {"bucket_size", "ethics_max_new_tokens", "log_every", "max_grad_norm", "min_shared_prefix",
                "quantization", "resume", "threads", "val_examples", "wandb_mode",
                "wandb_project", "weight_decay"}
    dagster_only = {"ethics_benign_prompts", "ethics_harmful_prompts", "nproc_per_node"}
    trainer = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    dagster = {name: field.default for name, field in LoraTrainingConfig.model_fields.items()}
    assert set(trainer) - set(dagster) == set_by_asset | internal, "a new TrainConfig field needs a Dagster config field"
    assert set(dagster) - set(trainer) == dagster_only, "a Dagster config field the trainer does not know"
    # Deliberate differences: the trainer alone has no decision files (plain SFT); the asset always has
    # decision_rows, so its defaults untie the head and fit the decision rows on them.
    assert {k: (trainer[k], dagster[k]) for k in set(trainer) & set(dagster)
            if trainer[k] != dagster[k]} == {"decision_init": ("words", "split"), "decision_fit": (False, True)}
