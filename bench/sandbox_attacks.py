"""Benchmark: the hostile-sample catalogue (tests/sandbox_attacks.py) against a sandbox implementation.

Runs every attack through the given implementation's run_python / scoring path, exactly as the
evaluation does, and says per attack whether it got through, judged from the evaluator's side. The
memory class is judged by host memory (/proc/meminfo) sampled from outside while the sample runs,
against the sample's budget (--memory-mb + --tmp-mb; the evaluation's own limits by default).
The previous, audit-hook implementation is the file at commit 6591554; the one before issue 26
(no memory cgroup, writable root) is at 7431162:

    git show 6591554:kala_lib/sandbox.py > /tmp/previous_sandbox.py
    .venv/bin/python bench/sandbox_attacks.py --implementation /tmp/previous_sandbox.py
    .venv/bin/python bench/sandbox_attacks.py            # today's kala_lib/sandbox.py

Last line: contained=<n>/<m> (attacks contained / attacks run)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--implementation", type=Path, default=PROJECT / "kala_lib" / "sandbox.py")
    parser.add_argument("--only", nargs="*", help="run these attacks only")
    parser.add_argument("--memory-mb", type=int, default=1024, help="the sample's memory limit (evaluation: 1024)")
    parser.add_argument("--tmp-mb", type=int, default=64, help="the sample's /tmp size (evaluation: 64)")
    args = parser.parse_args()

    from tests.sandbox_attacks import ATTACKS, load_sandbox, run_attack

    sandbox = load_sandbox(args.implementation)
    print(f"implementation: {args.implementation}; memory class budget {args.memory_mb} + {args.tmp_mb} MiB")
    escaped_by_kind, counts = Counter(), Counter()
    with tempfile.TemporaryDirectory() as scratch:
        for attack in ATTACKS:
            if args.only and attack.name not in args.only:
                continue
            started = time.monotonic()
            escaped, summary = run_attack(attack, sandbox, Path(scratch), args.memory_mb, args.tmp_mb)
            time.sleep(3.5 if attack.name == "plants_the_next_programs" else 0)  # let its watcher end
            counts["escaped" if escaped else "contained"] += 1
            escaped_by_kind[attack.kind] += escaped
            print(f"{attack.kind:<10} {attack.name:<30} {'ESCAPED' if escaped else 'contained':<9} "
                  f"{time.monotonic() - started:5.1f} s  {summary[:160]}", flush=True)
    print("escaped by class: " + ", ".join(f"{k} {v}" for k, v in sorted(escaped_by_kind.items())))
    print(f"escaped={counts['escaped']}")
    print(f"contained={counts['contained']}/{counts['contained'] + counts['escaped']}")


if __name__ == "__main__":
    main()
