"""Benchmark: generate and store 10,000 Constitutional-AI examples (target: under 10 s).

Baseline, measured in the same run: storing the same rows the way a first implementation
often does (``executemany`` INSERT, row by row) instead of KALA's one-statement bulk replace.

    .venv/bin/python bench/generate_examples.py [--size 10000] [--baseline-rows 2000]

The last line is machine-readable ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb

from kala_lib.dataset import RECORD_COLUMNS
from kala_lib.ethics_generator import generate_examples
from kala_lib.storage import replace_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--baseline-rows", type=int, default=2_000,
                        help="rows the row-by-row baseline stores (it is slow; its rate is per row)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "kala.duckdb"

        start = time.perf_counter()
        dataset = generate_examples(args.size, seed=args.seed)
        generate_s = time.perf_counter() - start

        start = time.perf_counter()
        frame = dataset.to_frame()
        with duckdb.connect(str(database)) as con:
            rows = replace_table(con, "constitutional_examples", frame)
        store_s = time.perf_counter() - start
        total_s = generate_s + store_s
        assert rows == args.size

        records = [e.to_record() for e in dataset.examples[: args.baseline_rows]]
        for record in records:
            record["tags"] = json.dumps(record["tags"])
            record["laws_involved"] = json.dumps(record["laws_involved"])
        columns = ", ".join(RECORD_COLUMNS)
        marks = ", ".join("?" for _ in RECORD_COLUMNS)
        start = time.perf_counter()
        with duckdb.connect(str(database)) as con:
            con.execute("CREATE TABLE baseline AS SELECT * FROM constitutional_examples LIMIT 0")
            con.execute("ALTER TABLE baseline ALTER tags TYPE VARCHAR")
            con.execute("ALTER TABLE baseline ALTER laws_involved TYPE VARCHAR")
            con.executemany(
                f"INSERT INTO baseline ({columns}) VALUES ({marks})",
                [[r[c] for c in RECORD_COLUMNS] for r in records],
            )
        baseline_per_row = (time.perf_counter() - start) / len(records)
        baseline_store_s = baseline_per_row * args.size

        # What a user waits for: the Dagster asset (generate, store, metadata) in process.
        import dagster as dg

        from kala_assets.assets.constitutional import constitutional_examples
        from kala_assets.resources import KalaWarehouse, kala_resources

        start = time.perf_counter()
        dg.materialize(
            [constitutional_examples],
            resources=kala_resources(KalaWarehouse(data_dir=str(Path(tmp) / "asset"))),
            run_config={"ops": {"constitutional_examples": {"config": {"size": args.size, "seed": args.seed}}}},
        )
        asset_s = time.perf_counter() - start

    print(f"examples:                {args.size}")
    print(f"generate:                {generate_s:8.2f} s")
    print(f"store (bulk replace):    {store_s:8.2f} s")
    print(f"total:                   {total_s:8.2f} s   (target < 10 s)")
    print(f"baseline row-by-row:     {baseline_store_s:8.2f} s   (measured on {len(records)} rows, scaled)")
    print(f"store speedup:           {baseline_store_s / store_s:8.1f}x")
    print(f"dagster asset, in process: {asset_s:6.2f} s   (generate + store + metadata)")
    print(
        f"size={args.size} generate_s={generate_s:.3f} store_s={store_s:.3f} total_s={total_s:.3f} "
        f"asset_s={asset_s:.3f} target_s=10 baseline_store_s={baseline_store_s:.3f} "
        f"store_speedup={baseline_store_s / store_s:.1f}"
    )


if __name__ == "__main__":
    main()
