"""Publishing a folder: built aside, swapped in by renames, the previous one intact on failure."""

import pytest

from kala_lib.storage import publish, staged_dir


def test_staged_dir_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "adapter"
    with staged_dir(target) as staging:
        (staging / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with staged_dir(target) as staging:
            (staging / "weights").write_text("half")
            raise RuntimeError("the save failed")
    assert (target / "weights").read_text() == "v1"  # the previous version, whole
    with staged_dir(target) as staging:
        (staging / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no staging or old copy left


def test_a_killed_write_leaves_nothing_behind_on_the_next_one(tmp_path):
    stale = tmp_path / ".step-000010.abc123.tmp"
    stale.mkdir()
    (stale / "adapter").write_text("partial")
    with staged_dir(tmp_path / "step-000010") as staging:
        (staging / "trainer_state.pt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000010"]


def test_publish_moves_a_file_or_folder_over_either(tmp_path):
    (tmp_path / "new.md").write_text("card")
    (tmp_path / "README.md").mkdir()  # a folder where the file goes
    publish(tmp_path / "new.md", tmp_path / "README.md")
    assert (tmp_path / "README.md").read_text() == "card"
    (tmp_path / "merged.new").mkdir()
    (tmp_path / "merged").write_text("a stray file")
    publish(tmp_path / "merged.new", tmp_path / "merged")
    assert (tmp_path / "merged").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "merged"]


def test_a_partition_with_a_new_column_joins_an_older_table_and_all_null_columns_take_text_later():
    import duckdb
    import pandas as pd

    from kala_lib.storage import replace_partition

    con = duckdb.connect()
    replace_partition(con, "eval_results", pd.DataFrame({"run_key": ["a"], "verdict": ["refuse"]}), "run_key", "a")
    newer = pd.DataFrame({"run_key": ["b", "b"], "verdict": ["comply", "degenerate"], "degenerate_kind": [None, None]})
    replace_partition(con, "eval_results", newer, "run_key", "b")  # a column the table lacks, NULL throughout
    later = pd.DataFrame({"run_key": ["c"], "verdict": ["degenerate"], "degenerate_kind": ["empty"]})
    replace_partition(con, "eval_results", later, "run_key", "c")
    rows = con.execute("SELECT run_key, degenerate_kind FROM eval_results ORDER BY run_key, verdict").fetchall()
    assert rows == [("a", None), ("b", None), ("b", None), ("c", "empty")]
    fresh = duckdb.connect()
    replace_partition(fresh, "t", pd.DataFrame({"k": [1], "kind": [None]}), "k", 1)
    replace_partition(fresh, "t", pd.DataFrame({"k": [2], "kind": ["loop"]}), "k", 2)
    assert fresh.execute("SELECT kind FROM t WHERE k = 2").fetchone() == ("loop",)
