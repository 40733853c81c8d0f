"""Benchmark: which public training sources help the fitted decision, on both validation slices.

The decision rows are fitted (kala_lib.decision_fit) on an adapter's final states, so a source's
effect is measured without retraining: the states of every training row (KALA's own and each public
source's) and every validation row are computed once, then the head is refitted with each set of
sources and scored on validation's two slices: KALA's phrasing, and the public sources held out
whole (leave-source-out). Nothing here reads an evaluation set; the gate's sample is not used.

Sets: KALA only; KALA + all public sources; KALA + all but one (each source left out in turn).
A source is worth keeping when leaving it out lowers the mean AUC of the two slices.

Reads ``decision_rows`` from the warehouse (built with ``safety_training_prompts``).

    .venv/bin/python bench/decision_sources.py --adapter PATH [--kala-rows 2000] [--public-rows 3000]

Last line: kala_only=<mean AUC> all_sources=<mean AUC> kept=<mean AUC> keep=<comma-separated sources or none>
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True, help="a decision-token adapter trained with decision_init split")
    parser.add_argument("--kala-rows", type=int, default=2000, help="KALA's own training rows (stratified by source)")
    parser.add_argument("--public-rows", type=int, default=3000, help="public training rows (stratified by source)")
    parser.add_argument("--validation-limit", type=int, default=400, help="validation prompts per label")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from kala_assets.resources import KalaWarehouse
    from kala_lib import decision_eval
    from kala_lib.chat_format import render_prompt
    from kala_lib.decision import auc
    from kala_lib.decision_data import decision_records, from_table
    from kala_lib.decision_fit import fit_head, head_rows, margins, prompt_states, sample_fit_rows
    from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    decisions = from_table(KalaWarehouse().read_records("decision_rows"))
    train = [dict(r) for r in decisions if r["split"] == "train"]
    is_own = [r["source"] in decision_eval.KALA_SOURCES or r["label"] == "capability" for r in train]
    own = [r for r, mine in zip(train, is_own) if mine]
    public = [r for r, mine in zip(train, is_own) if not mine]
    fit_rows = sample_fit_rows(own, args.kala_rows) + sample_fit_rows(public, args.public_rows)
    val_rows = decision_eval.validation_prompts(decision_records(decisions, "val"), args.validation_limit)
    sources = sorted({r["source"] for r in fit_rows if r["source"] not in decision_eval.KALA_SOURCES and r["label"] != "capability"})
    slices = {name: np.array([decision_eval.validation_slice(r["source"]) == name for r in val_rows]) for name in ("kala", "public")}
    harmful = np.array([r["label"] == "harmful" for r in val_rows])
    print(f"fit rows: {len(fit_rows)} ({len(fit_rows) - sum(r['source'] in sources for r in fit_rows)} KALA and capability, "
          f"public sources {sources}); validation {len(val_rows)} "
          f"({', '.join(f'{k} {int(v.sum())}' for k, v in slices.items())})", flush=True)
    if not slices["public"].any():
        raise SystemExit("decision_rows has no public validation slice: materialize safety_training_prompts and decision_rows")
    profile = get_profile("smollm2-135m")
    tokenizer = adapter_tokenizer(profile, args.adapter)
    model = load_adapter_model(profile, args.adapter).eval()
    prompts = [render_prompt(tokenizer, list(r["messages"]), profile.prompt_format) for r in [*fit_rows, *val_rows]]
    t0 = time.monotonic()
    states = prompt_states(model, tokenizer, prompts)[-1]
    print(f"states of {len(prompts)} prompts in {time.monotonic() - t0:.0f} s", flush=True)
    current = head_rows(model, tokenizer)
    fit_states, val_states = states[: len(fit_rows)], states[len(fit_rows):]

    def score(used: set[str]) -> dict[str, float]:
        keep = [i for i, r in enumerate(fit_rows) if r["source"] not in sources or r["source"] in used]
        fit = fit_head(current, fit_states[keep], [fit_rows[i] for i in keep], val_states, val_rows)
        m = margins(val_states, fit.rows)
        out = {name: auc(m[mask & harmful].tolist(), m[mask & ~harmful].tolist()) for name, mask in slices.items()}
        out["mean"] = (out["kala"] + out["public"]) / 2
        return out

    results = {"KALA only": score(set()), "KALA + all public": score(set(sources))}
    for source in sources:
        results[f"all but {source}"] = score(set(sources) - {source})
    print(f"{'training sources':<34} {'val KALA AUC':>13} {'val public AUC':>15} {'mean':>7}")
    for name, r in results.items():
        print(f"{name:<34} {r['kala']:>13.3f} {r['public']:>15.3f} {r['mean']:>7.3f}")
    full = results["KALA + all public"]["mean"]
    keep = [s for s in sources if results[f"all but {s}"]["mean"] < full]
    kept = score(set(keep))
    print(f"{'KALA + the kept sources':<34} {kept['kala']:>13.3f} {kept['public']:>15.3f} {kept['mean']:>7.3f}")
    print(f"{time.monotonic() - started:.0f} s in all; a source is kept when leaving it out lowers the mean AUC")
    print(f"kala_only={results['KALA only']['mean']:.3f} all_sources={full:.3f} kept={kept['mean']:.3f} "
          f"keep={','.join(keep) or 'none'}")


if __name__ == "__main__":
    main()
