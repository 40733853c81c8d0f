"""Benchmark: can any CPU-affordable training setting pass the ethics gate? (refusal vs over-refusal)

Three steps, so the expensive one can run on a lent GPU with nothing but files:

    .venv/bin/python bench/gate_sweep.py prepare --out DIR     # mix variants + a fixed eval set, from the warehouse
    python bench/gate_sweep.py run --data DIR --configs FILE   # train each config (KALA's trainer), score every checkpoint
    .venv/bin/python bench/gate_sweep.py probe --data DIR      # a linear probe on the base model's hidden states

``prepare`` needs a materialized warehouse (``'+training_mix'``). It writes the training mix at
three ethics refusal shares (as generated = 74%, 50%, 35%, 25%; the same 40/30/20/10 mix and
decontamination as the ``training_mix`` asset) and 480 ethics_eval_suite prompts (240 harmful,
240 benign, seeded). ``run`` reads one JSON object a line (name, mix, lr, steps, seq, every, seed)
and scores the base model and every checkpoint with KALA's generation and judge (48 new tokens,
as checkpoint_evaluations). ``probe`` fits a logistic regression on the last prompt token's hidden
state of 400 training prompts and scores the same 240-prompt eval sample: an estimate of how well
the base model's representation separates harmful from benign prompts at all.

Results of the runs behind the figures in docs/ethics.md (History): bench/results/gate_sweep_h200.jsonl, gate_probe_cpu.log.
The last line of ``run``: best_gap=<refusal - over_refusal> at=<config/checkpoint> refusal=<r> over_refusal=<o>
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
SHARES = {"asis": None, "r50": 0.5, "r35": 0.35, "r25": 0.25}


def warehouse_tables(*names: str) -> dict[str, list[dict]]:
    """Rows of the materialized tables (read-only): KALA_WAREHOUSE, else $KALA_DATA_DIR/kala.duckdb."""
    import duckdb

    data_dir = Path(os.environ.get("KALA_DATA_DIR") or PROJECT / "data")
    database = os.environ.get("KALA_WAREHOUSE") or str(data_dir / "kala.duckdb")
    with duckdb.connect(database, read_only=True) as con:
        return {name: con.execute(f'SELECT * FROM "{name}"').fetch_df().to_dict("records") for name in names}


def prepare(out: Path) -> None:
    from kala_lib import mixing

    tables = warehouse_tables("constitutional_examples", "benchmark_mbpp", "security_code_tasks", "benchmark_gsm8k",
                              "benchmark_math", "general_instructions", "benchmark_humaneval", "ethics_eval_suite")
    sources = mixing.MixSources(*(tables[n] for n in ("constitutional_examples", "benchmark_mbpp", "security_code_tasks",
                                                      "benchmark_gsm8k", "benchmark_math", "general_instructions")))
    index = mixing.build_eval_index(tables["benchmark_humaneval"], tables["benchmark_gsm8k"], tables["benchmark_mbpp"],
                                    tables["ethics_eval_suite"])
    pools, _ = mixing.decontaminated_pools(sources, mixing.SYSTEM_PROMPTS["short"], index)  # incoming/ left out
    out.mkdir(parents=True, exist_ok=True)
    for name, share in SHARES.items():
        mix = mixing.build_mix(pools, mixing.DEFAULT_WEIGHTS, 10_000, 0, 3, (0.9, 0.05, 0.05), share)
        with open(out / f"{name}_train.jsonl", "w") as handle:
            for row in mix.rows:
                if row["split"] == "train":
                    handle.write(json.dumps({"messages": json.loads(row["messages"]), "category": row["category"]}) + "\n")
        ethics = [r for r in mix.rows if r["category"] == "ethics"]
        print(f"{name}: {mix.size} examples, ethics refusal share {sum(r['behavior'] == 'refuse' for r in ethics) / len(ethics):.3f}")
    suite = tables["ethics_eval_suite"]
    rng = random.Random(7)
    benign = [s for s in suite if s["expected_behavior"] == "comply"]
    harmful = [s for s in suite if s["expected_behavior"] == "refuse"]
    rng.shuffle(benign)
    rng.shuffle(harmful)
    with open(out / "eval.jsonl", "w") as handle:
        for row in benign[:240] + harmful[:240]:
            handle.write(json.dumps({k: row[k] for k in ("eval_id", "prompt", "turns", "expected_behavior", "category", "source")},
                                    default=str) + "\n")


def run(data: Path, configs_file: Path, out: Path, budget_s: float, gen_batch: int) -> None:
    import torch
    from peft import PeftModel

    from kala_lib.evaluation import EvalLimits, evaluate_ethics
    from kala_lib.laws import SHORT_SYSTEM_PROMPT
    from kala_lib.models import get_profile, load_model, load_tokenizer
    from kala_lib.training import TrainConfig, train

    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    configs = [json.loads(line) for line in open(configs_file) if line.strip()]
    eval_rows = [json.loads(line) for line in open(data / "eval.jsonl")]
    profile = get_profile("smollm2-135m")
    tokenizer = load_tokenizer(profile)
    limits = EvalLimits(ethics_max_new_tokens=48, generation_batch_size=gen_batch)
    base = load_model(profile, device="cuda" if torch.cuda.is_available() else "cpu", quantization=None)
    records = []

    def score(model, config_name, checkpoint):
        t = time.time()
        results, metrics = evaluate_ethics(model, tokenizer, profile, eval_rows, SHORT_SYSTEM_PROMPT, limits)
        by = {}
        for r in results:
            key = f"{r['source']}/{r['expected_behavior']}"
            by.setdefault(key, [0, 0])
            by[key][0] += r["refused"]
            by[key][1] += 1
        record = {"config": config_name, "ckpt": checkpoint, "refusal": metrics["refusal_rate_harmful"]["value"],
                  "over_refusal": metrics["over_refusal_benign"]["value"],
                  "by": {k: round(a / b, 3) for k, (a, b) in sorted(by.items())}, "eval_s": round(time.time() - t, 1)}
        records.append(record)
        with open(out / "sweep.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"{config_name:24s} {checkpoint:12s} refusal={record['refusal']:.3f} over_refusal={record['over_refusal']:.3f}", flush=True)

    score(base, "base", "base")
    for config in configs:
        if time.time() - started > budget_s:
            print(f"time budget reached; skipping {config['name']}", flush=True)
            continue
        t = time.time()
        run_dir = out / "runs" / config["name"]
        train(TrainConfig(
            output_dir=str(run_dir), train_file=str(data / f"{config.get('mix', 'asis')}_train.jsonl"),
            learning_rate=config.get("lr", 2e-3), max_steps=config.get("steps", 40), max_seq_len=config.get("seq", 384),
            save_every=config.get("every", 10), keep_last=1000, ethics_every=10**9, fail_on_ethics_violation=False,
            seed=config.get("seed", 42), resume=False))
        print(f"{config['name']} trained in {time.time() - t:.1f}s", flush=True)
        for checkpoint in sorted((run_dir / "checkpoints").glob("step-*")):
            model = PeftModel.from_pretrained(base, str(checkpoint / "adapter"))
            score(model, config["name"], checkpoint.name)
            base = model.unload()
    best = max(records, key=lambda r: r["refusal"] - r["over_refusal"])
    print(f"best_gap={best['refusal'] - best['over_refusal']:.3f} at={best['config']}/{best['ckpt']} "
          f"refusal={best['refusal']:.3f} over_refusal={best['over_refusal']:.3f}")


def probe(data: Path, n_train: int = 400) -> None:
    import torch

    from kala_lib.chat_format import render_prompt
    from kala_lib.judge import judge
    from kala_lib.laws import SHORT_SYSTEM_PROMPT
    from kala_lib.models import get_profile, load_model, load_tokenizer

    profile = get_profile("smollm2-135m")
    tokenizer = load_tokenizer(profile)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_model(profile, device="cpu", quantization=None)

    def features(conversations, layers=(15, 25, 30)):
        out = {layer: [] for layer in layers}
        prompts = [render_prompt(tokenizer, [{"role": "system", "content": SHORT_SYSTEM_PROMPT}] + c, profile.prompt_format)
                   for c in conversations]
        with torch.no_grad():
            for i in range(0, len(prompts), 32):
                enc = tokenizer(prompts[i : i + 32], return_tensors="pt", padding=True, add_special_tokens=False)
                hidden = model.model(**enc, output_hidden_states=True).hidden_states
                for layer in layers:
                    out[layer].append(hidden[layer][:, -1].clone())
        return {layer: torch.cat(v) for layer, v in out.items()}

    train_rows = [json.loads(line) for line in open(data / "r50_train.jsonl")]
    ethics = [r for r in train_rows if r["category"] == "ethics"]
    random.Random(0).shuffle(ethics)
    ethics = ethics[:n_train]
    y = torch.tensor([float(judge(r["messages"][-1]["content"]).refused) for r in ethics])
    eval_rows = [json.loads(line) for line in open(data / "eval.jsonl")]
    eval_rows = eval_rows[:120] + eval_rows[-120:]  # 120 benign, 120 harmful
    y_eval = torch.tensor([float(e["expected_behavior"] == "refuse") for e in eval_rows])
    x_train = features([r["messages"][1:-1] for r in ethics])
    x_eval = features([json.loads(e["turns"]) if isinstance(e["turns"], str) else e["turns"] for e in eval_rows])
    best = None
    for layer in x_train:
        mu, sd = x_train[layer].mean(0), x_train[layer].std(0) + 1e-4
        xt, xe = (x_train[layer] - mu) / sd, (x_eval[layer] - mu) / sd
        for wd in (1e-3, 1e-2, 1e-1):
            w = torch.zeros(xt.shape[1], requires_grad=True)
            b = torch.zeros(1, requires_grad=True)
            optimizer = torch.optim.LBFGS([w, b], max_iter=200)

            def closure(optimizer=optimizer, xt=xt, w=w, b=b, wd=wd):  # called within this iteration only
                optimizer.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, y) + wd * (w**2).sum()
                loss.backward()
                return loss

            optimizer.step(closure)
            with torch.no_grad():
                p = torch.sigmoid(xe @ w + b)
                for threshold in (0.3, 0.5, 0.7):
                    predicted = p > threshold
                    refusal = predicted[y_eval == 1].float().mean().item()
                    over = predicted[y_eval == 0].float().mean().item()
                    print(f"layer {layer} wd {wd} thr {threshold}: refusal {refusal:.3f} over-refusal {over:.3f}", flush=True)
                    if best is None or refusal - over > best[0]:
                        best = (refusal - over, layer, refusal, over)
    print(f"probe_best_gap={best[0]:.3f} layer={best[1]} refusal={best[2]:.3f} over_refusal={best[3]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--configs", type=Path, required=True)
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench-sweep")))
    r.add_argument("--budget-s", type=float, default=440.0, help="start no new config after this many seconds")
    r.add_argument("--gen-batch", type=int, default=120)
    q = sub.add_parser("probe")
    q.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out)
    elif args.command == "run":
        run(args.data, args.configs, args.out, args.budget_s, args.gen_batch)
    else:
        probe(args.data)


if __name__ == "__main__":
    main()
