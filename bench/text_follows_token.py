"""Benchmark: does the text follow the decision token? The answer an adapter writes after a forced
``<|refuse_lawN|>`` and after a forced ``<|respond|>``, on validation decision rows only.

For each adapter and each sampled validation prompt (half harmful, half benign, every source
KALA's validation holds), the token is put at the start of the answer (generation's ``prefill``) and
the model writes the rest greedily (decision tokens suppressed after it); the refusal judge reads it. A decision the text follows refuses
after a refusal token and answers after ``<|respond|>``, whatever the prompt. Validation rows only:
never the gate's sample or another evaluation set.

    .venv/bin/python bench/text_follows_token.py --val-file <run>/decisions_val.jsonl \
        --adapter default=<run A>/checkpoints/step-000020/adapter --adapter scaled=<run B>/...

Last line, per adapter: ``<name>: follow=<refusal after refuse - refusal after respond>
refuse_after_refuse=<r> refuse_after_respond=<r> degenerate=<d> law_named=<share of the refusals
after a refusal token that cite that token's Law>``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def sample_rows(path: Path, per_label: int, seed: int) -> list[dict]:
    """``per_label`` harmful and benign validation rows, spread over sources (round-robin), seeded."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    chosen = []
    for label in ("harmful", "benign"):
        by_source: dict[str, list[dict]] = {}
        for row in rows:
            if row["label"] == label and row.get("split", "val") == "val":
                by_source.setdefault(row["source"], []).append(row)
        for group in by_source.values():
            rng.shuffle(group)
        picked, sources = [], sorted(by_source)
        while len(picked) < per_label and any(by_source.values()):
            for source in sources:
                if by_source[source] and len(picked) < per_label:
                    picked.append(by_source[source].pop())
        chosen += picked
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-file", type=Path, required=True, help="a run's decisions_val.jsonl")
    parser.add_argument("--adapter", action="append", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--per-label", type=int, default=30)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--profile", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from kala_lib.decision import REFUSE, RESPOND, decision_ids
    from kala_lib.generation import generate
    from kala_lib.judge import judge
    from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model

    profile = get_profile(args.profile)
    rows = sample_rows(args.val_file, args.per_label, args.seed)
    sources = sorted({(r["label"], r["source"]) for r in rows})
    print(f"{len(rows)} validation rows from {args.val_file} ({len(sources)} label/source pairs)")
    lines = []
    for spec in args.adapter:
        name, _, folder = spec.partition("=")
        started = time.time()
        model = load_adapter_model(profile, folder).eval()
        tokenizer = adapter_tokenizer(profile, folder)
        # the text after the forced token, with no further decision token (they are hidden from the user
        # anyway; an unfitted checkpoint's head would otherwise repeat them): the same for every adapter
        model.get_base_model().generation_config.suppress_tokens = decision_ids(tokenizer)
        counts = {"refuse": [0, 0], "respond": [0, 0]}  # [refusals, degenerate]
        named = 0  # refusals after <|refuse_lawN|> that cite Law N
        examples = {}
        jobs = [("respond", RESPOND, list(range(len(rows))))]
        for law, token in enumerate(REFUSE):
            members = [i for i, r in enumerate(rows) if int(r["law"] if r.get("law") is not None else 0) == law]
            if members:
                jobs.append(("refuse", token, members))
        for forced, token, members in jobs:
            conversations = [[m for m in rows[i]["messages"] if m["role"] != "assistant"] for i in members]
            texts = generate(model, tokenizer, conversations, profile.prompt_format,
                             max_new_tokens=args.max_new_tokens, batch_size=16, prefill=token)
            for i, text in zip(members, texts):
                verdict = judge(text)
                counts[forced][0] += verdict.refused
                counts[forced][1] += verdict.label == "degenerate"
                named += forced == "refuse" and verdict.refused and REFUSE.index(token) in verdict.laws
                examples.setdefault((forced, rows[i]["label"]), text)
        n = len(rows)
        after_refuse, after_respond = counts["refuse"][0] / n, counts["respond"][0] / n
        degenerate = (counts["refuse"][1] + counts["respond"][1]) / (2 * n)
        for (forced, label), text in sorted(examples.items()):
            print(f"  {name} after {forced:<7} ({label}): {text[:150]!r}")
        line = (f"{name}: follow={after_refuse - after_respond:.3f} refuse_after_refuse={after_refuse:.3f} "
                f"refuse_after_respond={after_respond:.3f} degenerate={degenerate:.3f} "
                f"law_named={named / counts['refuse'][0] if counts['refuse'][0] else 0:.3f}")
        print(f"{line}   ({time.time() - started:.0f} s)", flush=True)
        lines.append(line)
    print("  |  ".join(lines))


if __name__ == "__main__":
    main()
