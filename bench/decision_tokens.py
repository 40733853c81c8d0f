"""Benchmark: decision tokens at a training budget, and what a decision row costs against an SFT row.

Trains LoRA on the current ``training_mix`` (train split) plus the ``decision_rows`` stream, like
lora_adapter does, then scores the last checkpoint's decision on the decision rows' validation
split (one forward pass per prompt): AUC, refusal at the chosen validation over-refusal (5%) and at
10%, law accuracy. From the training metrics it prints the seconds per decision row and per SFT
row (same steps, same process). Materialize ``decision_rows`` first (``./scripts/main.sh --select
'*decision_rows'``).

    .venv/bin/python bench/decision_tokens.py [--steps 40] [--decision-share 0.75] [--decision-init words] [--work /tmp/kd]

Last line: auc=<a> refusal_at_5=<r> over_refusal=<o> refusal_at_10=<r10> law_accuracy=<l> decision_row_cost=<c>
(``decision_row_cost``: seconds per decision row / seconds per SFT row).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--decision-share", type=float, default=0.75)
    parser.add_argument("--decision-weight", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--decision-init", default="words", choices=("mean", "words", "split"))
    parser.add_argument("--decision-fit", action="store_true", help="fit the decision rows after training (needs --decision-init split)")
    parser.add_argument("--fit-rows", type=int, default=2000, help="training decision rows the fit reads")
    parser.add_argument("--validation-limit", type=int, default=400, help="validation prompts per label")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kala-decision-bench"))
    parser.add_argument("--adapter", type=Path, help="score this adapter instead of training")
    parser.add_argument("--refit", action="store_true",
                        help="with --adapter (trained with --decision-init split): fit its decision rows first, "
                             "saved under --work/fitted, as training with --decision-fit does")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from kala_assets.resources import KalaWarehouse
    from kala_lib import decision_eval, mixing
    from kala_lib.decision_data import decision_records, from_table
    from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model
    from kala_lib.training import TrainConfig, train

    torch.set_num_threads(args.threads)
    warehouse = KalaWarehouse()
    mix = warehouse.read_records("training_mix")
    decisions = from_table(warehouse.read_records("decision_rows"))
    args.work.mkdir(parents=True, exist_ok=True)
    profile = get_profile("smollm2-135m")
    adapter = args.adapter
    cost = None
    if adapter is None:
        train_file, decision_file = args.work / "train.jsonl", args.work / "decisions_train.jsonl"
        decision_val_file = args.work / "decisions_val.jsonl"
        decision_val_file.write_text(mixing.jsonl_text(decision_records(decisions, "val")))
        train_rows = mixing.split_records(mix, "train")
        train_file.write_text(mixing.jsonl_text(train_rows))
        decision_file.write_text(mixing.jsonl_text(decision_records(decisions, "train")))
        system = mixing.mix_system_prompt(train_rows)
        name = f"run-{args.steps}-{args.decision_share}-{args.decision_init}" + ("-fit" if args.decision_fit else "")
        config = TrainConfig(output_dir=str(args.work / name), train_file=str(train_file),
                             decision_tokens=True,
                             decision_file=str(decision_file) if args.decision_share or args.decision_fit else None,
                             decision_fit=args.decision_fit, decision_fit_rows=args.fit_rows,
                             decision_val_file=str(decision_val_file), decision_fit_val_limit=args.validation_limit,
                             decision_share=args.decision_share, decision_weight=args.decision_weight,
                             decision_init=args.decision_init,
                             max_steps=args.steps, learning_rate=args.learning_rate, max_seq_len=384,
                             save_every=args.steps, keep_last=1, ethics_every=10_000, val_examples=0,
                             threads=args.threads)
        started = time.monotonic()
        result = train(config, system_prompt=system)
        print(f"trained {args.steps} steps in {time.monotonic() - started:.0f} s")
        rows = [json.loads(line) for line in Path(result.output_dir, "metrics.jsonl").read_text().splitlines()]
        if args.decision_share:
            sft_s = sum(r["sft_seconds"] for r in rows) / sum(r["sft_rows"] for r in rows)
            dec_s = sum(r["decision_seconds"] for r in rows) / sum(r["decision_rows"] for r in rows)
            cost = dec_s / sft_s
            print(f"seconds per SFT row {sft_s:.3f}, per decision row {dec_s:.3f} (ratio {cost:.2f}); "
                  f"tokens per decision row {sum(r['decision_tokens'] for r in rows) / sum(r['decision_rows'] for r in rows):.0f}")
        adapter = Path(result.adapter_dir)
    if args.adapter is not None and args.refit:
        from kala_lib.decision_eval import validation_prompts
        from kala_lib.decision_fit import fit_model_head, sample_fit_rows
        from kala_lib.storage import staged_dir

        fit_rows = sample_fit_rows([dict(r) for r in decisions if r["split"] == "train"], args.fit_rows, seed=42)
        val_fit = validation_prompts(decision_records(decisions, "val"), args.validation_limit, seed=0)
        model = load_adapter_model(profile, adapter).eval()
        started = time.monotonic()
        fit, _ = fit_model_head(model, adapter_tokenizer(profile, adapter), profile, fit_rows, val_fit, log=print)
        print(f"refit in {time.monotonic() - started:.0f} s: {json.dumps({k: v for k, v in fit.summary().items() if k != 'tried'})}")
        with staged_dir(args.work / "fitted") as staging:
            model.save_pretrained(str(staging), save_embedding_layers=False)
            adapter_tokenizer(profile, adapter).save_pretrained(str(staging))
        adapter = args.work / "fitted"
    tokenizer = adapter_tokenizer(profile, adapter)
    model = load_adapter_model(profile, adapter).eval()
    val = decision_eval.validation_prompts(decision_records(decisions, "val"), args.validation_limit)
    started = time.monotonic()
    results, metrics = decision_eval.validate_decisions(model, tokenizer, profile, val, 0.05)
    print(f"validation: {len(val)} prompts in {time.monotonic() - started:.0f} s")
    by_source: dict = {}
    for row, r in zip(val, results):
        by_source.setdefault((row["source"], row["label"]), []).append(r["refused"])
    for (source, label), refused in sorted(by_source.items()):
        print(f"  {source:<24} {label:<8} n={len(refused):>4} refused {sum(refused) / len(refused):.3f}")
    for name, value in metrics.items():
        print(f"  {name}: {value['value']}")
    value = {k: metrics[k]["value"] for k in metrics}
    print(f"auc={value['val_decision_auc']:.3f} refusal_at_5={value['val_refusal_rate_harmful']:.3f} "
          f"over_refusal={value['val_over_refusal_benign']:.3f} refusal_at_10={value['val_refusal_at_10pct_over_refusal']:.3f} "
          f"law_accuracy={value['val_law_accuracy'] or 0:.3f} decision_row_cost={cost if cost is not None else float('nan'):.2f}")


if __name__ == "__main__":
    main()
