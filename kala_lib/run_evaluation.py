"""A training run from checkpoints to a promoted model: score, select, gate, promote.

``evaluate_run`` scores every checkpoint of a :class:`~kala_lib.training.TrainingRun` on the
training mix's validation split, selects one there, and scores that checkpoint and the base model
on the gate's sample and on capability. ``gate_decision`` applies the ethics gate to the selection;
``promote`` merges the gated adapter into the base weights and writes the model card. The Dagster
assets call these once each; so can a script.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from kala_lib import evaluation as ev
from kala_lib.plots import markdown_table
from kala_lib.training import TrainingRun

#: The metrics every table and the model card show, in this order.
HEADLINE = ("refusal_rate_harmful", "over_refusal_benign", "degenerate_rate_harmful", "degenerate_rate_benign",
            "degenerate_empty", "degenerate_fragment", "degenerate_loop",
            "law_identification_accuracy", "jailbreak_success_rate",
            "gsm8k_flexible_extract", "humaneval_pass_at_1", "mbpp_pass_at_1", "humaneval_pass_at_10",
            "mbpp_pass_at_10", "code_vulnerable_share", "perplexity")
VALIDATION = ("val_decision_auc", "val_refusal_rate_harmful", "val_over_refusal_benign",
              "val_refusal_at_10pct_over_refusal", "val_law_accuracy", "val_threshold",
              "val_kala_decision_auc", "val_kala_refusal_rate_harmful", "val_kala_over_refusal_benign",
              "val_public_decision_auc", "val_public_refusal_rate_harmful", "val_public_over_refusal_benign",
              "val_perplexity")
DECISION = ("gate_decision_auc", "gate_token_refusal_rate_harmful", "gate_token_over_refusal_benign",
            "decision_text_agreement")
GATE_METRICS = ("refusal_rate_harmful", "over_refusal_benign", "degenerate_rate_benign")


@dataclass
class EvaluationRun:
    """What checkpoint_evaluations found for one training run: every model's scores (one row per
    model and metric, as in the table eval_scores), the checkpoint selected on validation and why,
    and that checkpoint's outcome on each prompt of the gate's sample."""

    run: TrainingRun
    selected: str
    reason: str
    scores: list[dict[str, Any]]
    selected_gate_results: list[dict[str, Any]] = field(default_factory=list)
    tradeoff_path: str = ""  # the refusal/over-refusal picture's file ("" when none was written)

    @classmethod
    def from_dict(cls, value: dict) -> "EvaluationRun":
        return cls(**{**value, "run": TrainingRun(**value["run"])})

    def metrics_by_model(self) -> dict[str, dict[str, dict]]:
        out: dict = {}
        for row in self.scores:
            out.setdefault(row["model"], {})[row["metric"]] = {k: row[k] for k in ("value", "n", "ci_low", "ci_high")}
        return out


@dataclass
class ScoredRun:
    """An EvaluationRun plus every per-prompt result (the table eval_results) and the picture."""

    evaluation: EvaluationRun
    results: list[dict[str, Any]]
    tradeoff_svg: str
    gate_prompts: int
    validation_prompts: int
    base_scores_cached: bool | None


def evaluate_run(run: TrainingRun, suite: Sequence[dict], gsm8k: Sequence[dict], humaneval: Sequence[dict],
                 mbpp: Sequence[dict], limits: ev.EvalLimits, include_base: bool = True,
                 cache_dir: Path | None = None, log: Callable[[str], None] = print) -> ScoredRun:
    """Score ``run``'s checkpoints (selection on its validation split), then the selected one and the
    base model on the gate's sample of ``suite`` and on GSM8K test, HumanEval and MBPP test."""
    from peft import PeftModel

    from kala_lib import decision_eval
    from kala_lib.decision import decision_generation
    from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model, load_model, load_tokenizer
    from kala_lib.storage import read_jsonl
    from kala_lib.training import read_messages

    checkpoints = run.checkpoint_adapters()
    if not checkpoints:
        raise FileNotFoundError(f"no checkpoints under {Path(run.folder) / 'checkpoints'}")
    profile = get_profile(run.model_profile)
    system = run.system_prompt
    gate_rows = ev.gate_sample(suite, limits.gate_harmful, limits.gate_benign, limits.seed)
    gate_rows = ev.sample_rows(gate_rows, limits.ethics_limit, limits.seed, key="expected_behavior")
    # the base model is a comparison, not the gate: a stratified part of the same sample can do
    base_gate_rows = ev.sample_rows(gate_rows, limits.base_gate_limit, limits.seed, key="expected_behavior")
    val_file = Path(run.val_file) if run.val_file else None
    if val_file is not None and not val_file.is_file():
        raise FileNotFoundError(f"the training run's validation split {val_file} is missing (was KALA_DATA_DIR "
                                "moved?): re-materialize lora_adapter")
    has_val = val_file is not None
    val_records = [r for _, r in read_jsonl(val_file, ValueError)] if has_val else []
    val_rows = ev.validation_rows(val_records, limits.validation_limit, limits.seed)
    val_ppl = read_messages(val_file, limits.perplexity_examples, limits.seed) if has_val and limits.perplexity_examples else []
    gsm_test = [r for r in gsm8k if r["split"] == "test"]
    gsm_train = [r for r in gsm8k if r["split"] == "train"]
    mbpp_test = [r for r in mbpp if r["split"] == "test"]
    decisions = run.decision_tokens
    decision_rows = []
    if decisions:
        if not run.decision_val_file or not Path(run.decision_val_file).is_file():
            raise FileNotFoundError(f"the training run's decision validation split {run.decision_val_file} is missing: "
                                    "re-materialize decision_rows and lora_adapter")
        decision_rows = decision_eval.validation_prompts([r for _, r in read_jsonl(run.decision_val_file, ValueError)],
                                                         limits.decision_validation_limit, limits.seed)
    tokenizer = adapter_tokenizer(profile, checkpoints[0][2]) if decisions else load_tokenizer(profile)
    base_tokenizer = load_tokenizer(profile)
    for tok in (tokenizer, base_tokenizer):
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token

    def progress(model_name: str, what: str):
        started = time.monotonic()

        def report(done: int, total: int):
            elapsed = time.monotonic() - started
            eta = elapsed / done * (total - done) if done else float("nan")
            log(f"{model_name} {what}: {done}/{total} prompts, {elapsed:.0f} s, ETA {eta:.0f} s")
        return report

    def load(adapter):
        if adapter is None:
            return load_model(profile).eval()
        if decisions:
            return load_adapter_model(profile, adapter).eval()
        return PeftModel.from_pretrained(load_model(profile), str(adapter)).eval()

    def validate(name, model, adapter=None):
        if decisions and name != "base":  # one forward pass per prompt (or the fit's record); the threshold is chosen here
            started = time.monotonic()
            recorded = decision_eval.recorded_scores(adapter, decision_rows)
            per_prompt, metrics = decision_eval.validate_decisions(model, tokenizer, profile, decision_rows,
                                                                   limits.dial_max_over_refusal, scores=recorded)
            log(f"{name} decision validation: {len(decision_rows)} prompts in {time.monotonic() - started:.0f} s"
                + (" (scores the decision fit recorded)" if recorded else ""))
        elif decisions:  # the base model has no decision tokens: it is compared on the gate and capability
            per_prompt, metrics = [], {}
        else:
            per_prompt, metrics = ev.evaluate_ethics(model, tokenizer, profile, val_rows, system, limits,
                                                     progress(name, "validation ethics"))
            metrics = {f"val_{k}": v for k, v in metrics.items()}
        if val_ppl:
            tok = base_tokenizer if name == "base" else tokenizer
            metrics["val_perplexity"] = ev.perplexity(model, tok, profile, val_ppl)["perplexity"]
        return [dict(r, sample="validation") for r in per_prompt], metrics

    def gate_and_capability(name, model, validation_metrics, rows):
        tok = base_tokenizer if name == "base" else tokenizer
        threshold = validation_metrics.get("val_threshold", {}).get("value")
        if decisions and threshold is not None:  # the shipped dial: the model's own generation config
            model.generation_config.update(**decision_generation(model, tokenizer, threshold))
        per_prompt, metrics = ev.evaluate_ethics(model, tok, profile, rows, system, limits,
                                                 progress(name, "gate ethics"))
        if decisions and threshold is not None:
            decision_metrics, margins = decision_eval.gate_decisions(model, tokenizer, profile, rows, system,
                                                                     threshold, per_prompt)
            metrics.update(decision_metrics)
            curves["gate"] = margins
        metrics.update(ev.evaluate_gsm8k(model, tok, profile, gsm_test, gsm_train, system, limits))
        metrics.update(ev.evaluate_code(model, tok, profile, humaneval, mbpp_test, system, limits))
        if "val_perplexity" in validation_metrics:  # the headline perplexity is the validation split's
            metrics["perplexity"] = validation_metrics["val_perplexity"]
        return [dict(r, sample="gate") for r in per_prompt], metrics

    scored: dict[str, tuple[list, dict]] = {}
    curves: dict[str, dict] = {}
    for name, _, adapter in checkpoints:
        model = load(adapter)
        scored[name] = validate(name, model, adapter)
        log(f"{name} validation: " + headline(scored[name][1]))
        del model
    chosen, reason = ev.select_on_validation({n: m for n, (_, m) in scored.items()})
    log(f"selected {reason}")
    if decisions:
        margins = [r for r in scored[chosen][0] if "margin" in r]
        curves["validation"] = {"harmful": [r["margin"] for r in margins if r["expected_behavior"] == "refuse"],
                                "benign": [r["margin"] for r in margins if r["expected_behavior"] == "comply"]}
    model = load(dict((n, a) for n, _, a in checkpoints)[chosen])
    results, metrics = gate_and_capability(chosen, model, scored[chosen][1], gate_rows)
    scored[chosen] = (scored[chosen][0] + results, {**scored[chosen][1], **metrics})
    del model

    cache_hit = None
    if include_base:
        parts = {"model": profile.name, "model_id": profile.model_id, "system": system,
                 "limits": dataclasses.asdict(limits),
                 "gate": [(r["eval_id"], r["turns"]) for r in base_gate_rows],
                 "validation": [] if decisions else [(r["eval_id"], r["turns"]) for r in val_rows],
                 "perplexity": val_ppl,
                 "gsm8k": [r["question"] for r in gsm_test[: limits.gsm8k_limit or None]],
                 "humaneval": [r["task_id"] for r in humaneval[: limits.humaneval_limit or None]],
                 "mbpp": [r["task_id"] for r in mbpp_test[: limits.mbpp_limit or None]], "code": ev.code_version()}

        def base_scores():
            base = load(None)
            v_results, v_metrics = validate("base", base)
            g_results, g_metrics = gate_and_capability("base", base, v_metrics, base_gate_rows)
            return {"results": v_results + g_results, "metrics": {**v_metrics, **g_metrics}}

        if cache_dir is None:
            value, cache_hit = base_scores(), None
        else:
            value, cache_hit = ev.cached(cache_dir, parts, base_scores)
        log("base model scores " + {True: "from the cache", False: "computed and cached", None: "computed"}[cache_hit])
        scored = {"base": (value["results"], value["metrics"]), **scored}

    # The selection is recorded with the scores, so the gate promotes exactly what was scored.
    scored[chosen][1]["selected"] = {"value": 1.0, "n": None, "ci_low": None, "ci_high": None}
    steps = {n: s for n, s, _ in checkpoints}
    adapters = {n: str(a) for n, _, a in checkpoints}
    scores, all_results = [], []
    for name, (per_prompt, model_metrics) in scored.items():
        scores += [{"model": name, "step": steps.get(name), "adapter_path": adapters.get(name), "metric": metric,
                    **values} for metric, values in model_metrics.items()]
        all_results += [{"model": name, **{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()}}
                        for r in per_prompt]
    gate_results = [{k: r.get(k) for k in ("eval_id", "expected_behavior", "verdict", "degenerate_kind", "correct")}
                    for r in scored[chosen][0] if r.get("sample") == "gate"]
    svg = tradeoff_picture(scored, {sample: decision_eval.roc_curve(m["harmful"], m["benign"])
                                    for sample, m in curves.items()})
    evaluation = EvaluationRun(run, chosen, reason, scores, gate_results)
    return ScoredRun(evaluation, all_results, svg, len(gate_rows), len(val_rows), cache_hit)


def tradeoff_picture(scored: dict, curves: dict[str, list] | None = None) -> str:
    """Refusal against over-refusal: every model on the validation split, the selected one and the
    base model on the gate's sample, with the gate's region; for a decision-token run also the
    selected checkpoint's ROC curves (validation, gate sample) through the chosen point."""
    from kala_lib.plots import tradeoff_svg

    points = []
    for name, (_, metrics) in scored.items():
        for sample, prefix in (("validation", "val_"), ("gate", "")):
            refusal = metrics.get(f"{prefix}refusal_rate_harmful", {}).get("value")
            over = metrics.get(f"{prefix}over_refusal_benign", {}).get("value")
            if refusal is not None and over is not None:
                points.append({"label": name, "sample": sample, "refusal": refusal, "over_refusal": over})
    thresholds = ev.GateThresholds()
    return tradeoff_svg(points, thresholds.min_ethics_compliance, thresholds.max_over_refusal,
                        [{"sample": sample, "points": pts} for sample, pts in (curves or {}).items()])


def headline(metrics: dict) -> str:
    return ", ".join(f"{k} {v['value']:.3f}" for k, v in metrics.items() if v.get("value") is not None
                     and k in VALIDATION + HEADLINE)


def score_table(scores: Sequence[dict]) -> str:
    """Markdown: one row per metric, one column per model, with Wilson intervals and sample sizes."""
    models = list(dict.fromkeys(s["model"] for s in scores))
    by = {(s["model"], s["metric"]): s for s in scores}
    rows = []
    for metric in VALIDATION + HEADLINE + DECISION:
        if not any((m, metric) in by for m in models):
            continue
        cells = []
        for m in models:
            s = by.get((m, metric))
            if not s or s["value"] is None:
                cells.append("n/a")
            elif s["ci_low"] is None:
                cells.append(f"{s['value']:.2f}")
            else:
                cells.append(f"{s['value']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}] (n={s['n']})")
        rows.append([metric, *cells])
    return markdown_table(["metric", *models], rows)


def gate_decision(evaluation: EvaluationRun, thresholds: ev.GateThresholds) -> dict[str, Any]:
    """The row of the table best_checkpoint: the selected checkpoint, why, and whether it passed the
    gate (the gate's sample decides alone; selection never saw it)."""
    by_model = evaluation.metrics_by_model()
    base = by_model.pop("base", None)
    if not by_model:
        raise ValueError("no checkpoint scores for the training run: materialize checkpoint_evaluations")
    name = evaluation.selected
    if name not in by_model or by_model[name].get("selected", {}).get("value") != 1.0 \
            or "refusal_rate_harmful" not in by_model[name]:
        raise ValueError("the latest checkpoint_evaluations recorded no selected checkpoint with gate scores: "
                         "re-materialize checkpoint_evaluations")
    failures = ev.gate_failures(by_model[name], thresholds)
    adapter = next(r["adapter_path"] for r in evaluation.scores if r["model"] == name)
    failing = [r for r in evaluation.selected_gate_results if not r["correct"]]
    gate = {metric: by_model[name][metric] for metric in GATE_METRICS if metric in by_model[name]}
    return {"run_key": evaluation.run.key, "model": name, "adapter_path": adapter,
            "reason": ev.selection_reason(name, by_model), "gate_passed": not failures,
            "failures": json.dumps(failures), "min_ethics_compliance": thresholds.min_ethics_compliance,
            "max_over_refusal": thresholds.max_over_refusal, "max_capability_drop": thresholds.max_capability_drop,
            "capability": ev.capability_score(by_model[name]),
            "base_capability": ev.capability_score(base) if base else None,
            "gate_scores": json.dumps(gate),
            # decision-token runs: the margin threshold chosen on validation, shipped as the model's logit bias
            "decision_threshold": by_model[name].get("val_threshold", {}).get("value"),
            "failing_prompts": json.dumps([f"{r['eval_id']} ({r['expected_behavior']}, got {r['verdict']}"
                                           + (f", {r['degenerate_kind']}" if r.get("degenerate_kind") else "") + ")"
                                           for r in failing])}


def promote(evaluation: EvaluationRun, best: dict[str, Any], root: Path) -> dict[str, Path | str]:
    """Publish the gated checkpoint under ``root``: merged/ (adapter merged into the base weights, with
    a tokenizer whose default system turn is the constitution it was trained with), adapter/, the model
    card and the picture. Built whole in a staging folder, then published; refuses an ungated model."""
    from kala_lib.chat_format import with_default_system
    from kala_lib.models import adapter_tokenizer, get_profile, merge_adapter
    from kala_lib.storage import atomic_write_text, publish

    if not best["gate_passed"]:
        raise RuntimeError(f"{best['model']} did not pass the ethics gate: {best['failures']}")
    run = evaluation.run
    if best["run_key"] != run.key:
        raise ValueError(f"best_checkpoint is of training run {best['run_key']} but checkpoint_evaluations of {run.key}: "
                         "materialize best_checkpoint (and its ethics_gate check) again before promoting")
    profile = get_profile(run.model_profile)
    threshold = best.get("decision_threshold")
    threshold = None if threshold is None or threshold != threshold else float(threshold)  # NaN from a table
    with tempfile.TemporaryDirectory(dir=root, prefix=".staging-") as scratch:
        staging = Path(scratch)
        tokenizer = adapter_tokenizer(profile, best["adapter_path"])
        merge_adapter(profile, best["adapter_path"], staging / "merged", decision_threshold=threshold)
        # Chatting without a system turn gets the constitution the model was trained and gated with
        # (not the base model's default system prompt); plain-format models get that format as a template.
        tokenizer.chat_template = with_default_system(
            tokenizer.chat_template if profile.prompt_format == "chat_template" else None, run.system_prompt)
        tokenizer.save_pretrained(str(staging / "merged"))
        shutil.copytree(best["adapter_path"], staging / "adapter")
        scores = [r for r in evaluation.scores if r["model"] in ("base", best["model"])]
        picture = Path(evaluation.tradeoff_path) if evaluation.tradeoff_path else None
        has_picture = picture is not None and picture.is_file()
        if has_picture:
            shutil.copy(picture, staging / "tradeoff.svg")
            shutil.copy(picture, staging / "merged" / "tradeoff.svg")
        card = model_card(profile, best, score_table(scores), has_picture, threshold)
        atomic_write_text(staging / "README.md", card)
        shutil.copy(staging / "README.md", staging / "merged" / "README.md")
        for name in ["merged", "adapter", "README.md"] + (["tradeoff.svg"] if has_picture else []):
            publish(staging / name, root / name)
    return {"merged": root / "merged", "adapter": root / "adapter", "model_card": card}


def model_card(profile, best: dict, table: str, picture: bool = False, threshold: float | None = None) -> str:
    dial = "" if threshold is None else f"""
## The decision and its dial

Every response starts with a decision token the tokenizer hides (`skip_special_tokens`): `<|respond|>`, or
`<|refuse_lawN|>` naming the Law a refusal rests on. The model refuses when its best refusal token's logit beats
`<|respond|>` by more than the threshold **{threshold:+.3f}**, chosen on the validation split (the highest refusal
at a validation over-refusal of at most 5%; the gate's sample never entered the choice). The threshold ships as
`sequence_bias` in `generation_config.json` (its one-token entries: a penalty only, it never makes a decision token
appear later), and `begin_suppress_tokens` there (every other token, at the first position only) makes each answer
open with a decision token. The longer `sequence_bias` entries, each starting with a refusal token, make the text after
it that Law's sentence ("I can't help with that. It would go against Law N (name).") and end the answer there. So a
plain `AutoModelForCausalLM.from_pretrained(...).generate(...)` behaves as gated. To move the dial, edit the one-token
entries or run `bench/ethics_tradeoff.py --threshold T`.
"""
    return f"""---
library_name: transformers
base_model: {profile.model_id if profile.source != "embedded-gguf" else "HuggingFaceTB/SmolLM2-135M-Instruct"}
tags: [kala, lora, constitutional-ai, ethics]
license: apache-2.0
---

# KALA ({profile.name} + LoRA, {best['model']})

An ethics-aware model trained by KALA: LoRA on the 40/30/20/10 ethics/coding/math/general mix, with
the five-Law constitution as the system prompt. Promoted because it passed the ethics gate
(refusal on harmful prompts >= {best['min_ethics_compliance']:.0%}, over-refusal on benign prompts
<= {best['max_over_refusal']:.0%}).

Selection: {best['reason']}
{dial}
## Evaluation (against the base model; 95% Wilson intervals, sample sizes in brackets)

`val_*` rows: the training mix's validation split, on which the checkpoint was chosen. The other ethics
rows: the gate's sample of `ethics_eval_suite` (every XSTest safe prompt and held-out look-alike, and
harmful prompts stratified by source), which decided promotion.

{table}
{chr(10) + "![refusal against over-refusal per checkpoint (ROC curves of the decision on validation and the gate's sample), with the gate's region](tradeoff.svg)" + chr(10) if picture else ""}
Ethics metrics come from KALA's `ethics_eval_suite` (held-out KALA items, AdvBench, HarmBench, XSTest) judged by
`kala_lib.judge`; capability from GSM8K (flexible extract), HumanEval and MBPP (pass@1, sandboxed).
"""
