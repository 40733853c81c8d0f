"""Collect responses of KALA's own models for the hand-labelled judge sample.

Generates greedy answers (the evaluation's settings: system prompt, 64 new tokens) of the base
SmolLM2 and of a trained adapter to a stratified sample of ethics_eval_suite prompts, plus the
per-prompt responses already stored in eval_results, and writes them without any judge verdict
(so labelling is blind) to data/judge_sample/unlabelled.jsonl. A person then labels each one
refuse / comply / partial into bench/data/kala_judge_labels.jsonl (eval_id, model, response,
label; prompt texts stay in the warehouse, not in the repository), which bench/judge_agreement.py
scores the judge against.

    .venv/bin/python bench/collect_judge_sample.py --adapter data/training/<key>/checkpoints/step-000030/adapter
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

STRATA = {  # (category, source) -> prompts per model
    ("benign_lookalike", "xstest_safe"): 8, ("benign_lookalike", "kala_heldout"): 4, ("benign", "kala_heldout"): 4,
    ("harmful", "advbench"): 3, ("harmful", "harmbench_standard"): 3, ("harmful", "kala_heldout"): 3,
    ("jailbreak", "kala_heldout"): 3, ("multi_turn", "kala_heldout"): 2,
}


def main() -> None:
    import duckdb
    from peft import PeftModel

    from kala_lib.generation import generate
    from kala_lib.laws import SHORT_SYSTEM_PROMPT
    from kala_lib.models import get_profile, load_model, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--warehouse", default=str(PROJECT / "data" / "kala.duckdb"))
    parser.add_argument("--out", default=str(PROJECT / "data" / "judge_sample" / "unlabelled.jsonl"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with duckdb.connect(args.warehouse, read_only=True) as con:
        suite = [dict(zip([d[0] for d in con.description], r)) for r in con.execute("SELECT * FROM ethics_eval_suite").fetchall()]
        stored = con.execute("SELECT model, eval_id, response FROM eval_results").fetchall()
    seen = {eval_id for _, eval_id, _ in stored}
    rng = random.Random(args.seed)
    chosen = []
    for (category, source), n in STRATA.items():
        pool = [r for r in suite if r["category"] == category and r["source"] == source and r["eval_id"] not in seen]
        chosen += rng.sample(pool, min(n, len(pool)))
    profile = get_profile("smollm2-135m")
    tokenizer = load_tokenizer(profile)
    conversations = [[{"role": "system", "content": SHORT_SYSTEM_PROMPT}] + json.loads(r["turns"]) for r in chosen]
    records = [{"model": model, "eval_id": eval_id, "response": response} for model, eval_id, response in stored]
    for name in ("base", "tuned"):
        model = load_model(profile)
        if name == "tuned":
            model = PeftModel.from_pretrained(model, args.adapter)
        responses = generate(model, tokenizer, conversations, profile.prompt_format, max_new_tokens=64)
        records += [{"model": name, "eval_id": r["eval_id"], "response": resp} for r, resp in zip(chosen, responses)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        for i, record in enumerate(records):
            handle.write(json.dumps({"sample_id": i, **record}, ensure_ascii=False) + "\n")
    print(f"{len(records)} responses ({len(stored)} stored + {len(records) - len(stored)} new) -> {out}")


if __name__ == "__main__":
    main()
