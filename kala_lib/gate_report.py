"""The gate report: where the selected checkpoint stands, in one page a user can read.

Written by ``best_checkpoint`` beside the run (``$KALA_DATA_DIR/evaluation/<run>/gate_report.md``,
with ``tradeoff.svg``) and shown in the UI's metadata with the picture inline. It holds the gate's
figures with their intervals and what failed; the ROC picture with the gate's region; the shipped
dial's rates on each validation slice and on the gate's sample side by side (the calibration gap);
a per-source table of the gate's sample; ten failures each way, with the answers as the model gave
them; how often answers were degenerate; and, for the embedded model, the ceiling its frozen
representation allows (``bench/decision_ceiling.py``'s committed log).

``python -m kala_lib.gate_report --since EPOCH`` prints the short verdict ``scripts/main.sh`` ends
with and exits 3 when the gate blocked a fresh evaluation (see ``VERDICT_EXIT``).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from kala_lib.plots import markdown_table

#: ``scripts/main.sh``'s exit status when every step ran and the ethics gate blocked promotion
#: (a crash or another failure keeps Dagster's own non-zero status; 0 means promoted).
VERDICT_EXIT = 3
CEILING_LOG = Path(__file__).resolve().parent.parent / "bench" / "results" / "decision_ceiling_cpu.log"
REPORT_NAME = "gate_report.md"
_CEILING = re.compile(r"ceiling_auc=(\S+) ceiling_r10=(\S+) model_auc=(\S+) model_r10=(\S+)")


def ceiling(profile: str, log: Path = CEILING_LOG) -> dict[str, Any] | None:
    """The embedded model's measured ceiling (the bench's last line and its command line), or None
    for another profile or without the log."""
    if profile != "smollm2-135m" or not log.is_file():
        return None
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    match = next((m for m in map(_CEILING.search, reversed(lines)) if m), None)  # the bench's last line
    if not match:
        return None
    values = dict(zip(("ceiling_auc", "ceiling_r10", "model_auc", "model_r10"), map(float, match.groups())))
    return {**values, "command": lines[0].lstrip("# ").strip(), "log": str(log)}


def _fmt(score: Mapping[str, Any] | None) -> str:
    if not score or score.get("value") is None or score["value"] != score["value"]:
        return "n/a"
    if score.get("ci_low") is None:
        return f"{score['value']:.3f}"
    return f"{score['value']:.3f} [{score['ci_low']:.3f}, {score['ci_high']:.3f}] (n={score['n']})"


def _kind(row: Mapping[str, Any]) -> str | None:
    """A result's degenerate kind, None when the answer is fine (a table gives NaN for a missing one)."""
    kind = row.get("degenerate_kind")
    return kind if isinstance(kind, str) and kind else None


def _short(text: Any, width: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def build(record: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]], base: Mapping[str, Mapping] | None,
          gate_results: Sequence[Mapping[str, Any]], picture: str, profile: str) -> str:
    """The report's markdown. ``record``: best_checkpoint's row; ``metrics``: the selected checkpoint's
    scores by metric (``base``: the base model's); ``gate_results``: its per-prompt gate results;
    ``picture``: markdown for the ROC picture (a file link on disk, a data URI in the UI)."""
    passed = bool(record["gate_passed"])
    failures = json.loads(record["failures"]) if isinstance(record["failures"], str) else record["failures"]
    lines = [f"# Ethics gate: {'PASSED' if passed else 'BLOCKED'} ({record['model']}, run {record['run_key']})", ""]
    lines += [f"Gate: refusal on harmful prompts >= {record['min_ethics_compliance']:.0%} and over-refusal on benign "
              f"prompts <= {record['max_over_refusal']:.0%} on the gate's sample (selection never saw it). "
              f"Selected on validation: {record['reason']}.", ""]
    if failures:
        lines += ["Why it was blocked:", *[f"- {f}" for f in failures], ""]
    rows = []
    for metric, label in (("refusal_rate_harmful", "refusal on harmful (gate)"),
                          ("over_refusal_benign", "over-refusal on benign (gate)"),
                          ("degenerate_rate_harmful", "degenerate answers, harmful prompts"),
                          ("degenerate_rate_benign", "degenerate answers, benign prompts"),
                          ("degenerate_empty", "  empty (share of all prompts)"),
                          ("degenerate_fragment", "  starting mid-word or a fragment"),
                          ("degenerate_loop", "  looping"),
                          ("decision_text_agreement", "decision token and judged text agree"),
                          ("gate_decision_auc", "decision token AUC (gate's sample)"),
                          ("law_identification_accuracy", "refusals naming the right Law")):
        if metric in metrics or (base and metric in base):
            rows.append([label, _fmt(metrics.get(metric)), _fmt((base or {}).get(metric))])
    lines += [markdown_table(["figure", record["model"], "base model"], rows), ""]
    lines += ["## Refusal against over-refusal", "",
              "Each checkpoint on validation (circles) and the selected one and the base model on the gate's sample "
              "(squares); the curves are the selected checkpoint's decision ROC on validation and on the gate's "
              "sample; the green region is where the gate passes.", "", picture, ""]
    threshold = record.get("decision_threshold")
    if threshold is not None and threshold == threshold:
        lines += ["## The dial: one threshold, every slice", "",
                  f"The shipped threshold {threshold:+.3f} was chosen on validation (KALA's phrasing and the public "
                  "sources held out whole, together). Its rates on each slice and on the gate's sample, side by side: "
                  "where they differ, the dial does not carry.", ""]
        slices = []
        for name, prefix in (("validation, all", "val_"), ("validation, KALA's phrasing", "val_kala_"),
                             ("validation, public held-out sources", "val_public_")):
            auc = metrics.get(f"{prefix}decision_auc")
            if auc is None:
                continue
            slices.append([name, _fmt(auc), _fmt(metrics.get(f"{prefix}refusal_rate_harmful")),
                           _fmt(metrics.get(f"{prefix}over_refusal_benign"))])
        slices.append(["gate's sample, token", _fmt(metrics.get("gate_decision_auc")),
                       _fmt(metrics.get("gate_token_refusal_rate_harmful")), _fmt(metrics.get("gate_token_over_refusal_benign"))])
        slices.append(["gate's sample, judged text", "", _fmt(metrics.get("refusal_rate_harmful")),
                       _fmt(metrics.get("over_refusal_benign"))])
        lines += [markdown_table(["prompts", "AUC", "refusal on harmful", "over-refusal on benign"], slices), ""]
    by_source: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for r in gate_results:
        by_source[(str(r.get("source")), str(r["expected_behavior"]))].append(r)
    table = []
    for (source, expected), members in sorted(by_source.items()):
        refused = sum(bool(r.get("refused")) for r in members)
        degenerate = sum(_kind(r) is not None for r in members)
        right = sum(bool(r.get("correct")) for r in members)
        table.append([source, expected, len(members), f"{refused / len(members):.2f}", f"{degenerate / len(members):.2f}",
                      f"{right / len(members):.2f}"])
    lines += ["## The gate's sample by source", "",
              markdown_table(["source", "expected", "n", "refused", "degenerate", "correct"], table), ""]
    for title, expected in (("Harmful prompts it did not refuse", "refuse"), ("Benign prompts it did not answer", "comply")):
        wrong = [r for r in gate_results if r["expected_behavior"] == expected and not r.get("correct")][:10]
        lines += [f"## {title} (first {len(wrong)})", ""]
        lines += [markdown_table(["source", "prompt", "verdict", "answer"],
                                 [[r.get("source"), _short(r.get("prompt"), 120),
                                   str(r.get("verdict")) + (f" ({_kind(r)})" if _kind(r) else ""),
                                   _short(r.get("response"))] for r in wrong]) if wrong else "none", ""]
    measured = ceiling(profile)
    if measured:
        lines += ["## What this model can reach", "",
                  f"The best single-layer readout of the frozen base model separates validation's harmful and benign "
                  f"prompts with AUC {measured['ceiling_auc']:.3f} (refusal {measured['ceiling_r10']:.2f} at 10% "
                  f"over-refusal); the gate needs about 0.98. The shipped decision of the bench's adapter: AUC "
                  f"{measured['model_auc']:.3f}. No training of this 135M model reaches the gate; a larger profile on a "
                  f"GPU (configs/pythia_6_9b_gpu.yaml) is the way to a promoted model. Measured with `{measured['command']}`.",
                  ""]
    return "\n".join(lines)


def verdict_text(record: Mapping[str, Any], report: Path, profile: str) -> str:
    """The few lines ``scripts/main.sh`` ends with."""
    gate = json.loads(record["gate_scores"]) if isinstance(record["gate_scores"], str) else record["gate_scores"]
    failures = json.loads(record["failures"]) if isinstance(record["failures"], str) else record["failures"]
    head = "PROMOTED" if record["gate_passed"] else "BLOCKED by the ethics gate (not promoted; thresholds unchanged)"
    lines = [f"KALA verdict: {head}", f"  checkpoint {record['model']} of run {record['run_key']}"]
    for metric, label, need in (("refusal_rate_harmful", "refusal on harmful", f">= {record['min_ethics_compliance']:.0%}"),
                                ("over_refusal_benign", "over-refusal on benign", f"<= {record['max_over_refusal']:.0%}"),
                                ("degenerate_rate_benign", "degenerate on benign", "counts with over-refusal")):
        if metric in gate:
            lines.append(f"  {label:<24} {_fmt(gate[metric]):<36} (needs {need})")
    lines += [f"  - {f}" for f in failures]
    measured = ceiling(profile)
    if measured and not record["gate_passed"]:
        lines.append(f"  ceiling of this model (bench/decision_ceiling.py): frozen readout AUC {measured['ceiling_auc']:.3f}, "
                     f"refusal {measured['ceiling_r10']:.2f} at 10% over-refusal; the gate needs about AUC 0.98. "
                     "A larger profile on a GPU (configs/pythia_6_9b_gpu.yaml) is the way to a promoted model.")
    lines.append(f"  report: {report}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the verdict of the latest gate decision written after ``--since`` (epoch seconds);
    exit VERDICT_EXIT when it blocked, 0 when it passed, 1 when there is no fresh decision."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Print the ethics gate's verdict of the latest run.")
    parser.add_argument("--since", type=float, default=0.0, help="only a gate report written after this epoch time")
    parser.add_argument("--data-dir", default=os.environ.get("KALA_DATA_DIR") or str(Path(__file__).resolve().parent.parent / "data"))
    args = parser.parse_args(argv)
    reports = sorted(Path(args.data_dir, "evaluation").glob(f"*/{REPORT_NAME}"), key=lambda p: p.stat().st_mtime)
    fresh = [p for p in reports if p.stat().st_mtime >= args.since]
    if not fresh:
        print("KALA verdict: no gate decision was written by this run (it stopped before best_checkpoint); "
              "see the run's log above")
        return 1
    report = fresh[-1]
    record = json.loads((report.parent / "gate_decision.json").read_text())
    print(verdict_text(record, report, record.get("model_profile", "")))
    return 0 if record["gate_passed"] else VERDICT_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
