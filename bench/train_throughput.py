"""Benchmark: LoRA training throughput of KALA's trainer against transformers.Trainer + PEFT.

Both train the embedded SmolLM2-135M on the same sample of training_mix (train split), with the
same LoRA (r=16, alpha=32, dropout 0.05, q/k/v/o), batch 4 x accumulation 4, AdamW, cosine:
(a) baseline: transformers.Trainer, batches padded to the longest sequence, no packing, random order;
(b) KALA: length-bucketed batches, loss and logits only on target tokens, and the prefix every
example of a step shares (system prompt, chat header) run once per step.
Each runs in its own process (so peak RSS is its own), in rounds that alternate the order (baseline
then KALA, KALA then baseline, ...) so a machine that speeds up or slows down during the run (this
one moves by a fifth over minutes) weighs on both alike; tokens/s pools every round's tokens and
seconds. Reports non-padding tokens/s, the ratio,
and the share of this machine's fp32 matmul peak (measured here with a 2048^3 matmul), counting
4 x parameters FLOPs per token: "effective" counts every example token, "executed" (peak_share
in the last line) only the tokens KALA really ran through the model (the shared prefix once per
step).

    .venv/bin/python bench/train_throughput.py [--quick] [--steps N] [--rounds R] [--mix data/training_mix/train.jsonl]
    .venv/bin/python bench/train_throughput.py --against fp32   # KALA's default (mixed precision "auto")
                                                                # against KALA in float32 (mixed_precision: no)

The last line: speedup=<ratio> peak_share=<fraction> kala_tok_s=<n> baseline_tok_s=<n>
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def run_baseline(sample: Path, steps: int, seed: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from kala_lib.models import load_model, load_tokenizer
    from kala_lib.training import encode_example, read_messages

    tokenizer = load_tokenizer("smollm2-135m")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [encode_example(tokenizer, m, "chat_template", 512) for m in read_messages(sample)]
    dataset = [{"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)} for ids, labels in rows if ids]
    model = load_model("smollm2-135m")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    inner = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    counted = {"tokens": 0, "padded": 0}

    def collator(features):
        batch = inner(features)
        counted["tokens"] += int(batch["attention_mask"].sum())
        counted["padded"] += int(batch["attention_mask"].numel())
        return batch

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=4, gradient_accumulation_steps=4,
                                 max_steps=steps, learning_rate=2e-4, lr_scheduler_type="cosine",
                                 warmup_steps=int(round(0.03 * steps)),  # KALA rounds warmup_ratio the same way
                                 logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=seed,
                                 dataloader_num_workers=0, remove_unused_columns=False)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        torch.set_num_threads(os.cpu_count() or 1)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"tokens": counted["tokens"], "padded_tokens": counted["padded"], "seconds": seconds,
            "tok_s": counted["tokens"] / seconds, "params": sum(p.numel() for p in model.parameters())}


def run_kala(sample: Path, steps: int, seed: int, mixed_precision: str = "auto") -> dict:
    from kala_lib.training import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(output_dir=tmp, train_file=str(sample), max_steps=steps, seed=seed, save_every=10**6,
                             ethics_every=10**6, val_examples=0, max_seq_len=512, mixed_precision=mixed_precision)
        result = train(config)
        metrics = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    tokens = sum(m["tokens"] for m in metrics)
    computed = sum(m.get("computed_tokens", m["tokens"]) for m in metrics)
    seconds = sum(m["tokens"] / m["tokens_per_s"] for m in metrics)
    return {"tokens": tokens, "computed_tokens": computed, "seconds": seconds, "tok_s": tokens / seconds,
            "computed_tok_s": computed / seconds, "params": result.total_parameters,
            "mixed_precision": result.mixed_precision, "final_loss": result.final_loss}


def pooled(runs: list[dict]) -> dict:
    """One trainer's runs as one: tokens and seconds summed (tokens/s over all of them), RSS the peak."""
    data = dict(runs[0])
    for key in ("tokens", "padded_tokens", "computed_tokens", "seconds"):
        if key in data:
            data[key] = sum(run[key] for run in runs)
    data["tok_s"] = data["tokens"] / data["seconds"]
    if "computed_tokens" in data:
        data["computed_tok_s"] = data["computed_tokens"] / data["seconds"]
    data["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return data


def child(which: str, sample: str, steps: int, seed: int) -> None:
    if which == "baseline":
        data = run_baseline(Path(sample), steps, seed)
    else:
        data = run_kala(Path(sample), steps, seed, "no" if which == "kala-fp32" else "auto")
    data["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(data), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 steps each, one round (under 5 minutes)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=None,
                        help="runs of each trainer, in alternating order (default 2; 1 with --quick)")
    parser.add_argument("--mix", default=str(PROJECT / "data" / "training_mix" / "train.jsonl"))
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--against", choices=("hf", "fp32"), default="hf",
                        help="the baseline: transformers.Trainer + PEFT (hf), or KALA's trainer in float32 (fp32)")
    parser.add_argument("--child", nargs=2, metavar=("WHICH", "SAMPLE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = 3 if args.quick else args.steps
    rounds = args.rounds or (1 if args.quick else 2)
    if args.child:
        child(args.child[0], args.child[1], steps, args.seed)
        return
    mix = Path(args.mix)
    if not mix.is_file():
        sys.exit(f"{mix} is missing: run ./scripts/main.sh (or materialize training_mix) first, or pass --mix")
    lines = [line for line in mix.read_text().splitlines() if line.strip()]
    random.Random(args.seed).shuffle(lines)
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.jsonl"
        sample.write_text("\n".join(lines[: args.sample]) + "\n")
        runs = {"baseline": [], "kala": []}
        for round_index in range(rounds):
            for which in ("baseline", "kala") if round_index % 2 == 0 else ("kala", "baseline"):
                kind = "kala-fp32" if which == "baseline" and args.against == "fp32" else which
                command = [sys.executable, __file__, "--child", kind, str(sample), "--steps", str(steps),
                           "--seed", str(args.seed)]
                done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if done.returncode or not line:
                    sys.exit(f"{which} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                runs[which].append(json.loads(line[7:]))
                print(f"round {round_index + 1} {which:8s} {runs[which][-1]['tok_s']:8.1f} non-padding tok/s", flush=True)
    peak = matmul_peak()
    base, kala = (pooled(runs[which]) for which in ("baseline", "kala"))
    params = kala["params"]
    share = kala["tok_s"] * 4 * params / peak  # effective: every example token counts, shared prefix included
    executed = kala["computed_tok_s"] * 4 * params / peak  # the tokens KALA actually ran through the model
    speedup = kala["tok_s"] / base["tok_s"]
    print(f"steps per run: {steps} (batch 4 x accumulation 4), {rounds} run(s) of each, sample {args.sample} examples, "
          f"{os.cpu_count()} CPU threads")
    print(f"fp32 matmul peak:        {peak / 1e9:8.1f} GFLOP/s")
    if args.against == "fp32":
        print(f"baseline (KALA, fp32):   {base['tok_s']:8.1f} non-padding tok/s   final loss {base['final_loss']:.4f}   "
              f"peak RSS {base['peak_rss_mb']:.0f} MB")
    else:
        print(f"baseline (HF Trainer):   {base['tok_s']:8.1f} non-padding tok/s   padding share "
              f"{1 - base['tokens'] / base['padded_tokens']:.1%}   peak RSS {base['peak_rss_mb']:.0f} MB")
    print(f"KALA trainer ({kala['mixed_precision']}):     {kala['tok_s']:8.1f} non-padding tok/s   "
          f"final loss {kala['final_loss']:.4f}   peak RSS {kala['peak_rss_mb']:.0f} MB")
    print(f"speedup:                 {speedup:8.2f}x")
    print(f"share of matmul peak:    {share:8.1%}   effective (4 x {params / 1e6:.1f} M parameters per example token)")
    print(f"                         {executed:8.1%}   executed (tokens actually computed: the shared prefix "
          f"once per step, {1 - kala['computed_tokens'] / kala['tokens']:.0%} fewer)")
    print(f"speedup={speedup:.3f} peak_share={executed:.3f} kala_tok_s={kala['tok_s']:.1f} baseline_tok_s={base['tok_s']:.1f}")


if __name__ == "__main__":
    main()
