"""Benchmark: load every benchmark from the mirror and build the training mix (decontaminated).

Baseline, measured in the same run: decontamination done pairwise (each training item's n-grams
intersected with each evaluation item's n-gram set) instead of KALA's single hashed index; it is
measured on a sample of training items and scaled to the full pool.

    KALA_BENCHMARK_MIRROR=../shared/benchmarks .venv/bin/python bench/benchmarks_and_mix.py [--size 10000]

The last line is machine-readable ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from kala_lib import benchmarks, mixing
from kala_lib.ethics_generator import generate_examples
from kala_lib.eval_suite import build_eval_suite
from kala_lib.models import load_tokenizer
from kala_lib.security_tasks import security_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="requested mix size")
    parser.add_argument("--baseline-sample", type=int, default=100)
    args = parser.parse_args()
    if not os.environ.get("KALA_BENCHMARK_MIRROR"):
        default = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
        os.environ["KALA_BENCHMARK_MIRROR"] = str(default)

    timings = {}
    start = time.perf_counter()
    loaded = {name: loader() for name, loader in benchmarks.LOADERS.items()}
    timings["load_benchmarks"] = time.perf_counter() - start

    start = time.perf_counter()
    examples = [e.to_record() for e in generate_examples(10_000)]
    suite = build_eval_suite(advbench=loaded["advbench"].rows, harmbench=loaded["harmbench"].rows,
                             xstest=loaded["xstest"].rows, jailbreakbench=loaded["jailbreakbench"].rows)
    timings["examples_and_eval_suite"] = time.perf_counter() - start

    start = time.perf_counter()
    candidates = {
        "ethics": mixing.ethics_items(examples),
        "coding": mixing.mbpp_items(loaded["mbpp"].rows) + mixing.security_items([t.as_record() for t in security_tasks()]),
        "math": mixing.gsm8k_items(loaded["gsm8k"].rows) + mixing.math_items(loaded["math"].rows),
        "general": mixing.general_items(loaded["general"].rows),
    }
    timings["convert"] = time.perf_counter() - start

    start = time.perf_counter()
    index = mixing.build_eval_index(loaded["humaneval"].rows, loaded["gsm8k"].rows, loaded["mbpp"].rows, suite)
    pools, removed = {}, []
    for category, items in candidates.items():
        pools[category], dropped = index.filter(items)
        removed += dropped
    timings["decontaminate"] = time.perf_counter() - start

    start = time.perf_counter()
    result = mixing.build_mix(pools, size=args.size, seed=0)
    timings["mix"] = time.perf_counter() - start

    tokenizer = load_tokenizer("smollm2-135m")  # cached after the first run; not timed
    start = time.perf_counter()
    stats = mixing.token_length_stats(result.rows, tokenizer)
    timings["token_stats"] = time.perf_counter() - start
    total = sum(timings.values())

    # Baseline: pairwise n-gram set intersection against every evaluation item.
    eval_sets = [mixing.ngram_hashes(t) for t in _eval_texts(loaded, suite)]
    every = [item for items in candidates.values() for item in items]
    sample = every[:: max(1, len(every) // args.baseline_sample)][: args.baseline_sample]
    start = time.perf_counter()
    for item in sample:
        grams = mixing.ngram_hashes(item.dialogue_text())
        any(grams & other for other in eval_sets)
    baseline_decontaminate = (time.perf_counter() - start) / len(sample) * len(every)

    for name, seconds in timings.items():
        print(f"{name:28s} {seconds:8.2f} s")
    print(f"{'total':28s} {total:8.2f} s")
    print(f"mix: {result.size} examples (requested {args.size}, limiting {result.limiting_source}), "
          f"{len(removed)} removed by decontamination, {stats['all']['tokens']} tokens")
    print(f"baseline pairwise decontamination: {baseline_decontaminate:8.2f} s "
          f"(measured on {len(sample)} of {len(every)} items, scaled); "
          f"speedup {baseline_decontaminate / timings['decontaminate']:.1f}x")
    print(
        f"load_s={timings['load_benchmarks']:.3f} decontaminate_s={timings['decontaminate']:.3f} "
        f"mix_s={timings['mix']:.3f} total_s={total:.3f} mix_size={result.size} removed={len(removed)} "
        f"baseline_decontaminate_s={baseline_decontaminate:.3f} "
        f"decontaminate_speedup={baseline_decontaminate / timings['decontaminate']:.1f}"
    )


def _eval_texts(loaded, suite):
    import json

    texts = [r["prompt"] for r in loaded["humaneval"].rows]
    texts += [r["question"] for r in loaded["gsm8k"].rows if r["split"] == "test"]
    texts += [r["text"] for r in loaded["mbpp"].rows if r["split"] == "test"]
    for row in suite:
        texts += [t["content"] for t in json.loads(row["turns"]) if t["role"] == "user"]
    return texts


if __name__ == "__main__":
    main()
