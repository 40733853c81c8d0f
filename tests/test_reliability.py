"""Reliability drills: the training subprocess killed mid-run, and two processes writing the
warehouse at once."""

import multiprocessing
import os
import signal
import threading
import time

import dagster as dg
import duckdb
import pandas as pd
import psutil
import pytest

from kala_assets.resources import KalaWarehouse
from kala_lib.storage import StorageError
from tests.test_mix_assets import ALL, TINY_MODEL, built, resources, rows  # noqa: F401 - built is a fixture

KILL_CONFIG = {"max_steps": 40, "save_every": 2, "ethics_every": 1000,
               "ethics_harmful_prompts": 1, "ethics_benign_prompts": 1, "max_seq_len": 256,
               "fail_on_ethics_violation": False}


def training_processes():
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "kala_assets.training_entry" in " ".join(p.cmdline())]


@pytest.mark.slow
def test_killed_training_fails_the_asset_cleanly_and_the_next_run_resumes(built):  # noqa: F811
    warehouse, _ = built
    run_config = {"ops": {"lora_adapter": {"config": KILL_CONFIG}}, "resources": TINY_MODEL}
    outcome = {}

    def materialize():
        outcome["result"] = dg.materialize(ALL, resources=resources(warehouse), selection=["lora_adapter"],
                                           run_config=run_config, raise_on_error=False)

    thread = threading.Thread(target=materialize)
    thread.start()
    deadline = time.time() + 300
    checkpoint = None
    while time.time() < deadline and thread.is_alive() and checkpoint is None:
        checkpoint = next(iter(warehouse.root.glob("training/*/checkpoints/step-000004")), None)
        time.sleep(0.05)
    assert checkpoint is not None, "no checkpoint appeared before the run ended"
    victims = training_processes()
    assert victims, "the training subprocess was not found"
    for process in victims:
        os.kill(process.pid, signal.SIGKILL)
    thread.join(timeout=120)
    result = outcome["result"]
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    text = error.message + (error.cause.message if error.cause else "")
    assert "ended with exit code -9 (killed by signal 9, SIGKILL" in text and "resumes from step-0000" in text, text
    assert not (warehouse.root / "adapters" / "latest").exists()  # nothing half-published

    again = dg.materialize(ALL, resources=resources(warehouse), selection=["lora_adapter"], run_config=run_config)
    metadata = again.asset_materializations_for_node("lora_adapter")[0].metadata
    assert metadata["status"].value == "finished" and metadata["steps"].value == 40
    assert metadata["resumed_from_step"].value >= 4
    assert rows(warehouse, "SELECT count(*), count(DISTINCT step), max(step) FROM training_metrics") == [(40, 40, 40)]


def _writer(data_dir: str, table: str, rounds: int, lock_timeout_s: float, queue) -> None:
    warehouse = KalaWarehouse(data_dir=data_dir, lock_timeout_s=lock_timeout_s)
    try:
        for i in range(rounds):
            frame = pd.DataFrame({"round": i, "n": range(200_000), "text": f"{table}-{i}"})
            warehouse.replace_table(table, frame)
            warehouse.replace_table("shared", frame.assign(writer=table))
        queue.put((table, "ok"))
    except Exception as exc:  # reported to the test
        queue.put((table, f"{type(exc).__name__}: {exc}"))


def test_two_processes_writing_the_warehouse_take_turns_and_the_file_stays_whole(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    writers = [context.Process(target=_writer, args=(str(tmp_path), name, 4, 120.0, queue)) for name in ("a", "b")]
    for process in writers:
        process.start()
    outcomes = dict(queue.get(timeout=300) for _ in writers)
    for process in writers:
        process.join(timeout=60)
    assert outcomes == {"a": "ok", "b": "ok"}
    with duckdb.connect(str(tmp_path / "kala.duckdb"), read_only=True) as con:
        for table in ("a", "b"):
            assert con.execute(f"SELECT count(*), min(round), max(round) FROM {table}").fetchone() == (200_000, 3, 3)
        count, writers_seen = con.execute("SELECT count(*), count(DISTINCT writer) FROM shared").fetchone()
        assert count == 200_000 and writers_seen == 1  # one writer's whole table, never a mixture


def _hold_lock(path: str, seconds: float, ready) -> None:
    connection = duckdb.connect(path)
    connection.execute("CREATE TABLE IF NOT EXISTS held AS SELECT 1 AS x")
    ready.set()
    time.sleep(seconds)
    connection.close()


def test_a_writer_that_cannot_get_the_lock_in_time_fails_with_a_clear_message(tmp_path):
    warehouse = KalaWarehouse(data_dir=str(tmp_path), lock_timeout_s=1.0)
    warehouse.replace_table("kept", pd.DataFrame({"x": [1, 2, 3]}))
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(warehouse.database_path), 8.0, ready))
    holder.start()
    try:
        assert ready.wait(timeout=60)
        with pytest.raises(StorageError, match=r"still locked by another process .*PID \d+.* Wait for that run"):
            warehouse.replace_table("kept", pd.DataFrame({"x": [9]}))
    finally:
        holder.join(timeout=60)
    assert warehouse.read_records("kept") == [{"x": 1}, {"x": 2}, {"x": 3}]
