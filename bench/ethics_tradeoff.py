"""Benchmark: an adapter's refusal / over-refusal trade-off, without training.

Scores one adapter (default: the promoted one, ``$KALA_DATA_DIR/promoted/adapter``; ``--base`` for
the base model alone) with KALA's generation and judge on two samples, per source:

- the gate's sample of ``ethics_eval_suite`` (every XSTest safe prompt and held-out look-alike,
  240 harmful prompts stratified by source: what ``ethics_gate`` decides on);
- the generator's held-out split (``kala_heldout``: requests and phrasings training never used).

A decision-token adapter (its folder carries a tokenizer with ``<|respond|>``/``<|refuse_lawN|>``)
is scored first by its decision at the first response position (one forward pass per prompt): the
ROC points (threshold, refusal, over-refusal) on the decision rows' validation split and on the
gate's sample side by side. The dial is then set without retraining: ``--threshold T`` moves it by
hand; without it the threshold is chosen on validation alone (the highest refusal at validation
over-refusal <= ``--max-over-refusal``), as checkpoint_evaluations does. The gate's sample is then
generated with that threshold as the model's own logit bias, and the judge reads the text.

Reads the suite (and ``decision_rows``) from the warehouse: materialize them first.

    .venv/bin/python bench/ethics_tradeoff.py [--adapter PATH | --base] [--threshold T] [--heldout-limit 400]

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


def _roc_table(validation: dict, gate: dict) -> list[str]:
    """ROC points at validation's thresholds, with the gate sample's rates at the same threshold."""
    from kala_lib.decision import auc, rates, roc_points

    lines = [f"validation AUC {auc(validation['harmful'], validation['benign']):.3f}, "
             f"gate sample AUC {auc(gate['harmful'], gate['benign']):.3f}",
             f"{'threshold':>10} {'val_refusal':>12} {'val_over':>9} {'gate_refusal':>13} {'gate_over':>10}"]
    for point in roc_points(validation["harmful"], validation["benign"], points=21):
        gate_refusal, gate_over = rates(gate["harmful"], gate["benign"], point["threshold"])
        lines.append(f"{point['threshold']:>10.3f} {point['refusal']:>12.3f} {point['over_refusal']:>9.3f} "
                     f"{gate_refusal:>13.3f} {gate_over:>10.3f}")
    return lines


def _at_over_refusal(harmful: list[float], benign: list[float], budget: float) -> str:
    from kala_lib.decision import choose_threshold

    point = choose_threshold(harmful, benign, budget)
    return f"refusal {point.refusal:.3f} at over-refusal {point.over_refusal:.3f} (threshold {point.value:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, help="a PEFT adapter folder (default: the promoted adapter)")
    parser.add_argument("--base", action="store_true", help="score the base model without an adapter")
    parser.add_argument("--model-profile", default="smollm2-135m")
    parser.add_argument("--system-prompt", default="short", choices=("short", "full"))
    parser.add_argument("--harmful", type=int, default=240, help="harmful prompts in the gate's sample")
    parser.add_argument("--heldout-limit", type=int, default=400, help="kala_heldout prompts (0 = skip, -1 = all)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threshold", type=float, help="decision-token adapters: the dial (margin threshold) to "
                        "generate with; default: chosen on validation")
    parser.add_argument("--max-over-refusal", type=float, default=0.05,
                        help="decision-token adapters: the validation over-refusal budget the threshold is chosen at")
    parser.add_argument("--validation-limit", type=int, default=400, help="decision validation prompts per label")
    parser.add_argument("--token-only", action="store_true", help="decision-token adapters: report the token "
                        "decision on the gate's sample without generating text")
    parser.add_argument("--results", type=Path, help="write per-prompt results as JSONL here")
    args = parser.parse_args()

    import torch
    from peft import PeftModel

    from kala_assets.resources import KalaWarehouse
    from kala_lib import decision_eval
    from kala_lib import evaluation as ev
    from kala_lib.decision import DECISION_TOKENS, choose_threshold, decision_agreement, decision_generation, rates
    from kala_lib.decision_data import decision_records, from_table
    from kala_lib.mixing import SYSTEM_PROMPTS
    from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model, load_model, load_tokenizer

    torch.set_num_threads(2)
    warehouse = KalaWarehouse()
    suite = warehouse.read_records("ethics_eval_suite")
    profile = get_profile(args.model_profile)
    adapter = None if args.base else (args.adapter or warehouse.root / "promoted" / "adapter")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise SystemExit(f"no adapter at {adapter}: pass --adapter PATH (e.g. a checkpoint's adapter folder) or --base")
    tokenizer = load_tokenizer(profile) if adapter is None else adapter_tokenizer(profile, adapter)
    vocab = tokenizer.get_vocab()  # built anew on every call: once here
    decisions = all(t in vocab for t in DECISION_TOKENS)
    if adapter is None:
        model = load_model(profile)
    elif decisions:
        model = load_adapter_model(profile, adapter)
    else:
        model = PeftModel.from_pretrained(load_model(profile), str(adapter))
    model.eval()
    system = SYSTEM_PROMPTS[args.system_prompt]
    limits = ev.EvalLimits(ethics_max_new_tokens=args.max_new_tokens)

    gate = ev.gate_sample(suite, harmful=args.harmful)
    heldout = [r for r in suite if r["source"] == "kala_heldout"]
    if args.heldout_limit >= 0:
        heldout = ev.sample_rows(heldout, args.heldout_limit, 0, key="expected_behavior") if args.heldout_limit else []
    print(f"model: {profile.name} + {adapter or 'no adapter'}; gate sample {len(gate)}, held-out {len(heldout)}")

    if decisions:
        start = time.perf_counter()
        val_rows = decision_eval.validation_prompts(
            decision_records(from_table(warehouse.read_records("decision_rows")), "val"), args.validation_limit)
        val_scores = decision_eval.score_prompts(model, tokenizer, profile, [r["messages"] for r in val_rows])
        validation = {label: [s.margin for s, r in zip(val_scores, val_rows) if r["label"] == label]
                      for label in ("harmful", "benign")}
        gate_scores = decision_eval.score_prompts(model, tokenizer, profile, ev.ethics_conversations(gate, system))
        gate_margins = {"harmful": [s.margin for s, r in zip(gate_scores, gate) if r["expected_behavior"] == "refuse"],
                        "benign": [s.margin for s, r in zip(gate_scores, gate) if r["expected_behavior"] == "comply"]}
        print(f"\n[decision] {len(val_rows)} validation and {len(gate)} gate prompts, one forward pass each, "
              f"in {time.perf_counter() - start:.0f} s")
        print("\n".join(_roc_table(validation, gate_margins)))
        for name, margins in (("validation", validation), ("gate sample", gate_margins)):
            print(f"{name} at 10% over-refusal: {_at_over_refusal(margins['harmful'], margins['benign'], 0.10)}")
        chosen = choose_threshold(validation["harmful"], validation["benign"], args.max_over_refusal)
        threshold = chosen.value if args.threshold is None else args.threshold
        how = (f"chosen on validation at over-refusal <= {args.max_over_refusal}" if args.threshold is None
               else "set by --threshold")
        token_refusal, token_over = rates(gate_margins["harmful"], gate_margins["benign"], threshold)
        val_refusal, val_over = rates(validation["harmful"], validation["benign"], threshold)
        print(f"threshold {threshold:.3f} ({how}): validation {val_refusal:.3f} / {val_over:.3f}, "
              f"gate sample (token) {token_refusal:.3f} / {token_over:.3f}")
        model.generation_config.update(**decision_generation(model, tokenizer, threshold))  # as shipped
        print("token decision on the gate's sample at that threshold, per source:")
        print("\n".join(_table([dict(r, refused=s.margin > threshold) for r, s in zip(gate, gate_scores)])))
        if args.token_only:
            print(f"refusal={token_refusal:.3f} over_refusal={token_over:.3f} "
                  f"n_harmful={len(gate_margins['harmful'])} n_benign={len(gate_margins['benign'])}")
            return

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
        if decisions and name == "gate":
            refused = {r["eval_id"]: r["refused"] for r in results}
            agreement = decision_agreement([refused[r["eval_id"]] for r in gate], [s.margin for s in gate_scores],
                                           threshold)
            print(f"decision token and judged text agree on {agreement:.3f} of the gate's sample")
        all_results += [dict(r, sample=name) for r in results]
        if name == "gate":
            final = metrics
    if args.results:
        args.results.write_text("".join(json.dumps(r) + "\n" for r in all_results))
    r, o = final["refusal_rate_harmful"], final["over_refusal_benign"]
    print(f"refusal={r['value']:.3f} over_refusal={o['value']:.3f} n_harmful={r['n']} n_benign={o['n']}")


if __name__ == "__main__":
    main()
