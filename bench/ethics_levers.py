"""Benchmark: training levers for ethics that discriminates, each against plain SFT at the same wall-clock.

Every lever trains the CPU default (configs/cpu_default.yaml's lora_adapter settings) on the same
training mix, for as many steps as fit in the budget the default's steps take: a 3-step calibration
run times each lever's optimizer step (the first lever listed is the baseline), and its steps are
baseline steps x baseline step time / its step time. The final adapter is scored
with KALA's generation and judge on the mix's validation split (what a lever is chosen on), the
gate's sample of ethics_eval_suite and the generator's held-out split (reported, never used to
choose), per source. Needs a materialized training_mix and ethics_eval_suite in $KALA_DATA_DIR.

    .venv/bin/python bench/ethics_levers.py [--levers bench/ethics_levers.json] [--only NAME ...]
        [--log bench/results/ethics_levers_cpu.jsonl] [--heldout-limit 200]

One JSON line per lever goes to the log. The last line: best=<lever> val_margin=<refusal - over-refusal>
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]


def default_settings() -> dict:
    config = yaml.safe_load((PROJECT / "configs" / "cpu_default.yaml").read_text())["ops"]["lora_adapter"]["config"]
    drop = {"ethics_every", "fail_on_ethics_violation", "ethics_grace_steps", "save_every", "keep_last"}
    return {k: v for k, v in config.items() if k not in drop}


def train_lever(settings: dict, mix: Path, out: Path, steps: int) -> tuple[Path, list[float]]:
    """(adapter folder, seconds of each optimizer step as the trainer logged them)."""
    import shutil

    from kala_lib.training import TrainConfig, train

    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
    config = TrainConfig(output_dir=str(out), train_file=str(mix / "train.jsonl"), val_file=None,
                         ethics_every=10_000, save_every=10_000, keep_last=1, threads=2,
                         **{**settings, "max_steps": steps})
    result = train(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return Path(result.adapter_dir), [r["tokens"] / r["tokens_per_s"] for r in rows]


def score(adapter: Path, samples: dict[str, list[dict]], system: str, max_new_tokens: int) -> dict:
    from peft import PeftModel

    from kala_lib import evaluation as ev
    from kala_lib.models import get_profile, load_model, load_tokenizer

    profile = get_profile("smollm2-135m")
    tokenizer = load_tokenizer(profile)
    model = PeftModel.from_pretrained(load_model(profile), str(adapter)).eval()
    limits = ev.EvalLimits(ethics_max_new_tokens=max_new_tokens)
    out = {}
    for name, rows in samples.items():
        results, metrics = ev.evaluate_ethics(model, tokenizer, profile, rows, system, limits)
        by_source = defaultdict(list)
        for r in results:
            by_source[f"{r['source']}:{r['expected_behavior']}"].append(r["refused"])
        out[name] = {"refusal": metrics["refusal_rate_harmful"], "over_refusal": metrics["over_refusal_benign"],
                     "by_source": {k: {"n": len(v), "refused": sum(v) / len(v)} for k, v in sorted(by_source.items())}}
    return out


def short_ethics_targets(source: Path, target: Path) -> None:
    """The data lever "targets no longer than the decision and the explanation": a refusal keeps its
    first sentence (the decision) and the sentence citing the Law; other rows are unchanged."""
    import re

    with open(source) as src, open(target, "w") as out:
        for line in src:
            row = json.loads(line)
            if row.get("category") == "ethics" and row.get("behavior") == "refuse":
                reply = row["messages"][-1]["content"]
                sentences = re.split(r"(?<=[.!?])\s+", reply)
                cited = next((s for s in sentences[1:] if re.search(r"\bLaw [0-4]\b", s)), "")
                row["messages"][-1]["content"] = " ".join(x for x in (sentences[0], cited) if x)
            out.write(json.dumps(row) + "\n")


def balanced_refusals(source: Path, target: Path, share: float = 0.5, seed: int = 0) -> None:
    """The data lever ethics_refusal_share=0.5 on an existing mix: the same number of ethics rows,
    half refusals, drawn with the mix's own rule (each row n // m times, a seeded n % m once more)."""
    import random

    rows = [json.loads(line) for line in open(source)]
    ethics = [r for r in rows if r.get("category") == "ethics"]
    rest = [r for r in rows if r.get("category") != "ethics"]
    rng = random.Random(seed)
    picked = []
    for behavior, n in (("refuse", round(share * len(ethics))), ("comply", len(ethics) - round(share * len(ethics)))):
        pool = [r for r in ethics if r["behavior"] == behavior]
        rng.shuffle(pool)
        full, extra = divmod(n, len(pool))
        picked += [r for i, r in enumerate(pool) for _ in range(full + (1 if i < extra else 0))]
    mixed = rest + picked
    rng.shuffle(mixed)
    with open(target, "w") as out:
        out.writelines(json.dumps(r) + "\n" for r in mixed)


TRANSFORMS = {"short_ethics_targets": short_ethics_targets, "refusal_share_0.5": balanced_refusals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", type=Path, default=PROJECT / "bench" / "ethics_levers.json")
    parser.add_argument("--only", nargs="*", help="run these levers only")
    parser.add_argument("--log", type=Path, default=PROJECT / "bench" / "results" / "ethics_levers_cpu.jsonl")
    parser.add_argument("--heldout-limit", type=int, default=200, help="kala_heldout prompts scored (0 = skip)")
    parser.add_argument("--reuse", action="append", default=[], metavar="LEVER=ADAPTER",
                        help="score this adapter for LEVER instead of training it (e.g. the main command's last "
                        "checkpoint for the default); its step time is still calibrated")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--samples", nargs="+", default=["validation", "gate", "heldout"],
                        help="which samples to score (validation is what the best lever is chosen on)")
    parser.add_argument("--work", type=Path, help="keep each lever's run folder here (default: a temporary folder)")
    args = parser.parse_args()

    import torch

    from kala_assets.resources import KalaWarehouse
    from kala_lib import evaluation as ev
    from kala_lib.mixing import SYSTEM_PROMPTS
    from kala_lib.storage import read_jsonl

    torch.set_num_threads(2)
    warehouse = KalaWarehouse()
    mix = warehouse.root / "training_mix"
    suite = warehouse.read_records("ethics_eval_suite")
    samples = {
        "validation": ev.validation_rows([r for _, r in read_jsonl(mix / "val.jsonl")]),
        "gate": ev.gate_sample(suite),
    }
    if args.heldout_limit:
        samples["heldout"] = ev.sample_rows([r for r in suite if r["source"] == "kala_heldout"], args.heldout_limit, 0,
                                            key="expected_behavior")
    samples = {name: rows for name, rows in samples.items() if name in args.samples}
    reuse = dict(item.split("=", 1) for item in args.reuse)
    defaults = default_settings()
    budget_steps = defaults["max_steps"]
    levers = json.loads(args.levers.read_text())
    if args.only:
        levers = [lever for lever in levers if lever["name"] in args.only]
    system = SYSTEM_PROMPTS["short"]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work or Path(scratch)
        baseline_step_s = None
        for lever in levers:
            settings = {**defaults, **lever.get("set", {})}
            mix = warehouse.root / "training_mix"
            if lever.get("transform"):
                mix = Path(tmp) / f"{lever['name']}-mix"
                mix.mkdir(parents=True, exist_ok=True)
                TRANSFORMS[lever["transform"]](warehouse.root / "training_mix" / "train.jsonl", mix / "train.jsonl")
            _, seconds = train_lever(settings, mix, Path(tmp) / f"{lever['name']}-calibrate", 3)
            step_s = sum(seconds) / len(seconds)
            baseline_step_s = baseline_step_s or step_s
            steps = max(1, round(budget_steps * baseline_step_s / step_s))
            if lever["name"] in reuse:
                adapter, train_s = Path(reuse[lever["name"]]), None
            else:
                adapter, seconds = train_lever(settings, mix, Path(tmp) / lever["name"], steps)
                train_s = round(sum(seconds), 1)
            scores = score(adapter, samples, system, args.max_new_tokens)
            record = {"lever": lever["name"], "set": lever.get("set", {}), "transform": lever.get("transform"), "steps": steps, "train_s": train_s,
                      "adapter": str(adapter) if lever["name"] in reuse else None,
                      "calibration_step_s": round(step_s, 2), **scores, "time": time.time()}
            results.append(record)
            args.log.parent.mkdir(parents=True, exist_ok=True)
            with open(args.log, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            line = [f"{lever['name']:<28} steps {steps:>3} train {train_s or 0:6.0f} s"]
            for name in samples:
                line.append(f"{name} {scores[name]['refusal']['value']:.2f}/{scores[name]['over_refusal']['value']:.2f}")
            print("  ".join(line), flush=True)
    chooser = "validation" if "validation" in samples else next(iter(samples))
    best = max(results, key=lambda r: r[chooser]["refusal"]["value"] - r[chooser]["over_refusal"]["value"])
    margin = best[chooser]["refusal"]["value"] - best[chooser]["over_refusal"]["value"]
    print(f"best={best['lever']} val_margin={margin:.3f}" if chooser == "validation" else
          f"best={best['lever']} {chooser}_margin={margin:.3f}")


if __name__ == "__main__":
    main()
