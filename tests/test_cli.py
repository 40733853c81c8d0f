"""The command-line contract users' scripts rely on: validate, materialize, runs in DAGSTER_HOME."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.instance.ref import InstanceRef

PROJECT = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")


def run(args, env_extra, cwd=None, timeout=300):
    """Run the dagster CLI from outside the project, so the project's .env (which points
    DAGSTER_HOME at dagster_home/) does not override the test's temporary instance."""
    cwd = cwd or env_extra.get("KALA_DATA_DIR", "/tmp")
    os.makedirs(cwd, exist_ok=True)
    env = {**os.environ, **env_extra}
    return subprocess.run([DAGSTER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_definitions_validate(tmp_path):
    result = run(["definitions", "validate", "-m", "kala_assets"], {"DAGSTER_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_materialize_from_a_script_records_runs_in_dagster_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT / "dagster_home" / "dagster.yaml").read_text())
    data = tmp_path / "data"
    env = {"DAGSTER_HOME": str(home), "KALA_DATA_DIR": str(data)}
    args = ["asset", "materialize", "-m", "kala_assets", "--select", "constitutional_examples,constitutional_exports",
            "-c", str(PROJECT / "configs" / "smoke.yaml")]
    result = run(args, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    with duckdb.connect(str(data / "kala.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM constitutional_examples").fetchone() == (800,)
    assert (data / "exports" / "constitutional_chat.jsonl").exists()

    # The run is in the instance the UI reads (dagster dev with the same DAGSTER_HOME).
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].is_success
        assert runs[0].asset_selection == {dg.AssetKey("constitutional_examples"), dg.AssetKey("constitutional_exports")}
        record = instance.get_latest_materialization_event(dg.AssetKey("constitutional_exports"))
        assert record is not None


def test_plus_training_mix_builds_from_an_empty_warehouse(tmp_path, mini_mirror):
    """Issue 3's command: every input of the mix is a direct parent, so '+training_mix' is enough."""
    data = tmp_path / "data"
    env = {"DAGSTER_HOME": str(tmp_path), "KALA_DATA_DIR": str(data), "KALA_BENCHMARK_MIRROR": str(mini_mirror),
           "KALA_MODEL_CACHE": os.environ["KALA_MODEL_CACHE"]}
    result = run(["asset", "materialize", "-m", "kala_assets", "--select", "+training_mix",
                  "-c", str(PROJECT / "configs" / "smoke.yaml")], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with duckdb.connect(str(data / "kala.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT category) FROM training_mix").fetchone() == (4,)


def test_failed_run_gives_non_zero_exit_and_a_clear_message(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path), "KALA_DATA_DIR": str(tmp_path / "data")}
    result = run(
        ["asset", "materialize", "-m", "kala_assets", "--select", "constitutional_examples",
         "--config-json", '{"ops": {"constitutional_examples": {"config": {"size": 0}}}}'],
        env,
    )
    assert result.returncode != 0
    assert "size must be positive" in result.stdout + result.stderr


@pytest.mark.slow
def test_main_job_materializes_the_whole_graph_from_the_mirror(tmp_path):
    """The README's main command on the smoke config: every asset and check, real mirror data."""
    mirror = os.environ.get("KALA_TEST_MIRROR") or str(PROJECT.parent / "shared" / "benchmarks")
    if not Path(mirror).is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the benchmark mirror at {mirror}")
        pytest.skip(f"no benchmark mirror at {mirror} (set KALA_TEST_MIRROR)")
    data = tmp_path / "data"
    env = {"DAGSTER_HOME": str(tmp_path), "KALA_DATA_DIR": str(data), "KALA_BENCHMARK_MIRROR": mirror}
    # The whole graph: data, 3 training steps and evaluation of SmolLM2 (a guard, not a timing target).
    result = run(["asset", "materialize", "-m", "kala_assets", "--select", "*",
                  "-c", str(PROJECT / "configs" / "smoke.yaml")], env, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    with duckdb.connect(str(data / "kala.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert {"constitutional_examples", "training_mix", "ethics_eval_suite", "benchmark_humaneval",
                "benchmark_gsm8k", "security_code_tasks"} <= tables
        assert con.execute("SELECT count(*) FROM ethics_eval_suite").fetchone()[0] >= 1000
        assert con.execute("SELECT count(*) FROM benchmark_gsm8k WHERE split = 'test'").fetchone()[0] == 1319
    for split in ("train", "val", "test"):
        assert (data / "training_mix" / f"{split}.jsonl").stat().st_size > 0
