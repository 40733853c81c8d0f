"""Benchmark: an adapter's refusal / over-refusal trade-off, without training.

Scores one adapter (default: the promoted one, ``$KALA_DATA_DIR/promoted/adapter``; ``--base`` for
the base model alone) with KALA's generation and judge on two samples, per source:

- the gate's sample of ``ethics_eval_suite`` (every XSTest safe prompt and held-out look-alike,
  240 harmful prompts stratified by source: what ``ethics_gate`` decides on);
- the generator's held-out split (``kala_heldout``: requests and phrasings training never used).

Reads the suite from the warehouse (materialize ``ethics_eval_suite`` first).

    .venv/bin/python bench/ethics_tradeoff.py [--adapter PATH | --base] [--heldout-limit 400]

The last line, for the gate's sample: refusal=<r> over_refusal=<o> n_harmful=<n> n_benign=<m>
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path


def _table(results: list[dict]) -> list[str]:
    by = defaultdict(list)
    for r in results:
        by[(r["source"], r["expected_behavior"])].append(r["refused"])
    lines = [f"{'source':<24} {'expected':<8} {'n':>5} {'refused':>8}"]
    for (source, expected), refused in sorted(by.items()):
        lines.append(f"{source:<24} {expected:<8} {len(refused):>5} {sum(refused) / len(refused):>8.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, help="a PEFT adapter folder (default: the promoted adapter)")
    parser.add_argument("--base", action="store_true", help="score the base model without an adapter")
    parser.add_argument("--model-profile", default="smollm2-135m")
    parser.add_argument("--system-prompt", default="short", choices=("short", "full"))
    parser.add_argument("--harmful", type=int, default=240, help="harmful prompts in the gate's sample")
    parser.add_argument("--heldout-limit", type=int, default=400, help="kala_heldout prompts (0 = skip, -1 = all)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--results", type=Path, help="write per-prompt results as JSONL here")
    args = parser.parse_args()

    import torch
    from peft import PeftModel

    from kala_assets.resources import KalaWarehouse
    from kala_lib import evaluation as ev
    from kala_lib.mixing import SYSTEM_PROMPTS
    from kala_lib.models import get_profile, load_model, load_tokenizer

    torch.set_num_threads(2)
    warehouse = KalaWarehouse()
    suite = warehouse.read_records("ethics_eval_suite")
    profile = get_profile(args.model_profile)
    tokenizer = load_tokenizer(profile)
    model = load_model(profile)
    adapter = None if args.base else (args.adapter or warehouse.root / "promoted" / "adapter")
    if adapter is not None:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise SystemExit(f"no adapter at {adapter}: pass --adapter PATH (e.g. a checkpoint's adapter folder) or --base")
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    system = SYSTEM_PROMPTS[args.system_prompt]
    limits = ev.EvalLimits(ethics_max_new_tokens=args.max_new_tokens)

    gate = ev.gate_sample(suite, harmful=args.harmful)
    heldout = [r for r in suite if r["source"] == "kala_heldout"]
    if args.heldout_limit >= 0:
        heldout = ev.sample_rows(heldout, args.heldout_limit, 0, key="expected_behavior") if args.heldout_limit else []
    print(f"model: {profile.name} + {adapter or 'no adapter'}; gate sample {len(gate)}, held-out {len(heldout)}")
    all_results = []
    for name, rows in (("gate", gate), ("heldout", heldout)):
        if not rows:
            continue
        start = time.perf_counter()
        results, metrics = ev.evaluate_ethics(model, tokenizer, profile, rows, system, limits)
        seconds = time.perf_counter() - start
        print(f"\n[{name}] {len(rows)} prompts in {seconds:.0f} s")
        print("\n".join(_table(results)))
        for metric in ("refusal_rate_harmful", "over_refusal_benign"):
            m = metrics[metric]
            print(f"{metric}: {m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}] (n={m['n']})")
        all_results += [dict(r, sample=name) for r in results]
        if name == "gate":
            final = metrics
    if args.results:
        args.results.write_text("".join(json.dumps(r) + "\n" for r in all_results))
    r, o = final["refusal_rate_harmful"], final["over_refusal_benign"]
    print(f"refusal={r['value']:.3f} over_refusal={o['value']:.3f} n_harmful={r['n']} n_benign={o['n']}")


if __name__ == "__main__":
    main()
