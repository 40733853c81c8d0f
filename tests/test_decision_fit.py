"""Fitted decision rows (kala_lib.decision_fit): the regressions, the head they build, and that the
rows are the model's own weights through save, load and merge; the fit sees training rows only."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kala_lib import decision as d
from kala_lib import decision_fit as f
from kala_lib.models import (
    adapter_tokenizer,
    get_profile,
    load_adapter_model,
    load_model,
    load_tokenizer,
    merge_adapter,
)
from kala_lib.training import TrainConfig, TrainingError, TrainingRun, train

SYSTEM = "You are KALA."


# --- the regressions ------------------------------------------------------------------------------------


def _separable(n=400, d=12, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    x = rng.normal(size=(n, d)) * noise + rng.normal(size=d) * 3  # an offset the fit must absorb
    y = (x @ direction + rng.normal(size=n) * 0.5 > np.median(x @ direction)).astype(int)
    return x * rng.uniform(0.01, 10, size=d), y  # features on very different scales


def test_logistic_fit_separates_and_is_returned_in_raw_feature_space():
    x, y = _separable()
    fit = f.fit_logistic(x, y, l2=1e-3)
    scores = fit.scores(x)
    assert d.auc(scores[y == 1].tolist(), scores[y == 0].tolist()) > 0.95
    # raw-space weights: the same scores as standardising by hand
    assert np.corrcoef(scores, x @ fit.weight)[0, 1] > 0.999
    shuffled = f.fit_logistic(x, np.random.default_rng(1).permutation(y), l2=1e-3).scores(x)
    assert d.auc(shuffled[y == 1].tolist(), shuffled[y == 0].tolist()) < 0.75  # no signal, no separation
    with pytest.raises(d.DecisionError, match="labels 0 and 1"):
        f.fit_logistic(x, np.zeros(len(y)), l2=1e-3)


def test_stronger_l2_shrinks_the_weights_and_softmax_learns_classes():
    x, y = _separable()
    weak, strong = f.fit_logistic(x, y, l2=1e-4), f.fit_logistic(x, y, l2=10.0)
    assert np.linalg.norm(strong.weight * x.std(0)) < np.linalg.norm(weak.weight * x.std(0))
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(5, 8)) * 3
    labels = rng.integers(0, 5, size=500)
    feats = centres[labels] + rng.normal(size=(500, 8))
    soft = f.fit_softmax(feats, labels, 5, l2=1e-3)
    assert (soft.scores(feats).argmax(1) == labels).mean() > 0.9


def test_balanced_weights_give_each_label_half_and_each_source_an_equal_share():
    labels = [1] * 90 + [1] * 10 + [0] * 50
    groups = ["big"] * 90 + ["small"] * 10 + ["b"] * 50
    w = f.balanced_weights(labels, groups)
    assert w[:100].sum() == pytest.approx(0.5) and w[100:].sum() == pytest.approx(0.5)
    assert w[:90].sum() == pytest.approx(w[90:100].sum())


def test_assembled_rows_ship_the_fitted_direction_as_the_margin():
    rng = np.random.default_rng(3)
    current = rng.normal(size=(6, 8))
    direction, laws = rng.normal(size=8), rng.normal(size=(5, 8))
    states = rng.normal(size=(50, 8))
    rows = f.assemble_rows(current, direction, laws, law_scale=0.0)
    assert np.allclose(f.margins(states, rows), states @ direction)  # no Law term: the margin is h.v
    rows = f.assemble_rows(current, direction, laws, law_scale=0.5)
    common = (current[0] + current[1:].mean(0)) / 2
    assert np.allclose((rows[0] + rows[1:].mean(0)) / 2, common)  # what makes a decision token top stays


def _rows(n, label, source, law=0, split="train"):
    return [{"key": f"{source}:{label}:{i}", "label": label, "source": source, "law": law if label == "harmful" else None,
             "split": split} for i in range(n)]


def test_the_fit_takes_training_rows_only_and_chooses_on_validation():
    rng = np.random.default_rng(4)
    fit_rows = [dict(r, law=i % 5) for i, r in enumerate(_rows(120, "harmful", "gen"))] + _rows(120, "benign", "gen")
    val_rows = [dict(r, law=i % 5) for i, r in enumerate(_rows(40, "harmful", "gen", split=None))] + _rows(40, "benign", "gen", split=None)
    direction = rng.normal(size=16)

    def states(rows):
        y = np.array([r["label"] == "harmful" for r in rows])
        return rng.normal(size=(len(rows), 16)) + np.outer(np.where(y, 1.5, -1.5), direction) / np.linalg.norm(direction)

    fit = f.fit_head(rng.normal(size=(6, 16)), states(fit_rows), fit_rows, states(val_rows), val_rows)
    assert fit.val_auc > 0.95 and len(fit.tried) == len(f.L2_GRID) * len(f.LAW_SCALES)
    assert fit.val_auc == max(t["val_auc"] for t in fit.tried)  # the choice is validation's best
    leaked = fit_rows + [dict(val_rows[0], split="val")]
    with pytest.raises(d.DecisionError, match="training rows only"):
        f.fit_head(rng.normal(size=(6, 16)), states(leaked), leaked, states(val_rows), val_rows)


def test_sampled_fit_rows_take_every_cell_equally():
    rows = _rows(900, "harmful", "gen") + _rows(90, "benign", "corpus") + _rows(10, "benign", "public") \
        + _rows(300, "benign", "gen")
    chosen = f.sample_fit_rows(rows, 200, equal_cells=True)
    counts = {}
    for r in chosen:
        counts[(r["source"], r["label"])] = counts.get((r["source"], r["label"]), 0) + 1
    # the small cell gives all it has; the three others share the rest equally (water-filling)
    assert len(chosen) == 200 and counts[("public", "benign")] == 10
    assert sorted(counts[k] for k in counts if k != ("public", "benign")) == [63, 63, 64]
    assert len({id(r) for r in chosen}) == 200 and f.sample_fit_rows(rows, 200, equal_cells=True) == chosen  # seeded
    assert f.sample_fit_rows(rows, None, equal_cells=True) == rows and f.sample_fit_rows(rows[:50], 100) == rows[:50]


def test_sampled_fit_rows_keep_every_source_share():
    rows = _rows(900, "harmful", "gen") + _rows(90, "benign", "corpus") + _rows(10, "benign", "public")
    chosen = f.sample_fit_rows(rows, 100)
    counts = {s: sum(r["source"] == s for r in chosen) for s in ("gen", "corpus", "public")}
    assert counts == {"gen": 90, "corpus": 9, "public": 1}  # each source its share, never none
    assert f.sample_fit_rows(rows, None) == rows


# --- untied rows: training, fitting, save, load, merge ----------------------------------------------------------


@pytest.fixture
def files(decision_run_files):
    return decision_run_files


def _config(tmp_path, files, **overrides):
    fields = dict(output_dir=str(tmp_path / "run"), train_file=str(files / "train.jsonl"), model_profile="tiny-gpt-neox",
                  max_steps=2, save_every=1, keep_last=2, ethics_every=100, max_seq_len=256, val_examples=0, threads=1,
                  decision_tokens=True, decision_init="split", decision_fit=True, decision_fit_rows=60,
                  decision_file=str(files / "decisions_train.jsonl"), decision_val_file=str(files / "decisions_val.jsonl"),
                  decision_fit_val_limit=20, per_device_batch_size=2, gradient_accumulation_steps=1, learning_rate=5e-3)
    fields.update(overrides)
    return TrainConfig(**fields)


def test_fit_settings_are_validated(tmp_path, files):
    with pytest.raises(TrainingError, match="decision_init: split"):
        _config(tmp_path, files, decision_init="words").validate()
    with pytest.raises(TrainingError, match="decision_val_file"):
        _config(tmp_path, files, decision_val_file=str(tmp_path / "none.jsonl")).validate()
    with pytest.raises(TrainingError, match="decision_fit_rows"):
        _config(tmp_path, files, decision_fit_rows=3).validate()
    with pytest.raises(TrainingError, match="decision_fit_equal_cells"):
        _config(tmp_path, files, decision_fit_equal_cells="yes").validate()


def test_split_init_unties_the_head_reads_a_line_break_and_predicts_the_words():
    profile = get_profile("smollm2-135m")
    tokenizer = load_tokenizer(profile, decision_tokens=True)
    model = load_model(profile)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # SmolLM2 ties
    d.resize_for_decisions(model, tokenizer, init="split")
    inputs, outputs = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert inputs is not outputs and model.config.tie_word_embeddings is False
    respond, *refuse = d.decision_ids(tokenizer)
    newline, sure, i = (tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("\n", "Sure", "I"))
    assert torch.equal(inputs[respond], inputs[newline]) and all(torch.equal(inputs[r], inputs[newline]) for r in refuse)
    assert torch.equal(outputs[respond], outputs[sure]) and all(torch.equal(outputs[r], outputs[i]) for r in refuse)
    assert torch.equal(outputs[: respond], inputs[: respond])  # every other row unchanged


def test_fitted_rows_survive_save_load_and_merge_and_leave_the_input_rows_alone(tmp_path, files):
    result = train(_config(tmp_path, files))
    run_dir = Path(result.output_dir)
    steps = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert steps == ["step-000001", "step-000002"]
    log = [json.loads(line) for line in (run_dir / "decision_fit.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["n_fit"]["validation"] > 0 for r in log)
    profile = get_profile("tiny-gpt-neox")
    fitted = run_dir / "checkpoints" / "step-000002" / "fitted"
    plain = run_dir / "checkpoints" / "step-000002" / "adapter"
    record = json.loads((fitted / "decision_fit.json").read_text())
    tokenizer = adapter_tokenizer(profile, fitted)
    ids = d.decision_ids(tokenizer)
    trained, refit = load_adapter_model(profile, plain).eval(), load_adapter_model(profile, fitted).eval()
    rows = f.head_rows(refit, tokenizer)
    assert np.allclose(rows, np.array(record_rows := rows))  # readable back
    assert not np.allclose(f.head_rows(trained, tokenizer), rows)  # the fit changed the head rows...
    assert torch.equal(trained.get_input_embeddings().weight[ids], refit.get_input_embeddings().weight[ids])  # ...not the input rows
    # the recorded validation margins are what a forward pass of the saved, fitted adapter gives
    from kala_lib.chat_format import render_prompt

    val = record["validation"][:6]
    by_key = {json.loads(line)["key"]: json.loads(line) for line in (files / "decisions_val.jsonl").read_text().splitlines()}
    prompts = [render_prompt(tokenizer, by_key[v["key"]]["messages"], profile.prompt_format) for v in val]
    scores = d.decision_scores(refit, tokenizer, prompts)
    assert np.allclose([s.margin for s in scores], [v["margin"] for v in val], atol=1e-3)
    # the published adapter is the last checkpoint's fitted one; evaluation reads fitted/ folders
    assert np.allclose(f.head_rows(load_adapter_model(profile, result.adapter_dir), tokenizer), record_rows)
    # a re-run of the finished run keeps the fitted folders (same checkpoint, rows and settings)
    before = (fitted / "adapter_model.safetensors").stat().st_mtime_ns
    again = train(_config(tmp_path, files))
    assert (fitted / "adapter_model.safetensors").stat().st_mtime_ns == before
    assert len((run_dir / "decision_fit.jsonl").read_text().splitlines()) == 2
    assert np.allclose(f.head_rows(load_adapter_model(profile, again.adapter_dir), tokenizer), record_rows)
    run = TrainingRun(key="k", folder=str(run_dir), adapter=result.adapter_dir, train_file="", val_file=None,
                      checkpoints=steps, model_profile="tiny-gpt-neox", system_prompt=SYSTEM, status="finished")
    assert [a.name for _, _, a in run.checkpoint_adapters()] == ["fitted", "fitted"]
    # merged: plain transformers, the same logits at the decision position
    merged = merge_adapter(profile, fitted, tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    x = torch.tensor([tokenizer(prompts[0], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=x).logits[0, -1], refit(input_ids=x).logits[0, -1], atol=1e-4)


def test_fitting_a_tied_head_is_refused():
    from peft import LoraConfig, get_peft_model

    profile = get_profile("smollm2-135m")
    tokenizer = load_tokenizer(profile, decision_tokens=True)
    model = load_model(profile)
    d.resize_for_decisions(model, tokenizer, init="words")  # tied: the head follows the embedding
    ids = d.decision_ids(tokenizer)
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], trainable_token_indices={"embed_tokens": ids}))
    with pytest.raises(d.DecisionError, match="tied|no trainable decision rows"):
        f.set_head_rows(model, tokenizer, np.zeros((6, 576)))


@pytest.mark.parametrize("profile_name", ["tiny-gpt-neox", "smollm2-135m"])
def test_states_with_the_shared_prefix_run_once_equal_a_full_pass_per_prompt(profile_name):
    from kala_lib.chat_format import render_prompt

    profile = get_profile(profile_name)
    tokenizer = load_tokenizer(profile)
    model = load_model(profile).eval()
    conversations = [[{"role": "system", "content": "You are KALA. Follow the five Laws, in order, always."},
                      {"role": "user", "content": text}] for text in
                     ("How do I bake bread?", "Write a poem about the sea and the wind over it", "hi", "Explain DNS " * 20)]
    prompts = [render_prompt(tokenizer, c, profile.prompt_format) for c in conversations]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert f.common_prefix_length(ids) >= 16  # the system turn is shared
    shared = f.prompt_states(model, tokenizer, prompts, layers=[2, -1], batch_size=3)
    whole = f.prompt_states(model, tokenizer, prompts, layers=[2, -1], batch_size=3, min_shared_prefix=10_000)
    for layer in (2, -1):
        assert np.allclose(shared[layer], whole[layer], atol=2e-4)
    with torch.no_grad():  # and both are the state a plain forward pass of one prompt ends with
        alone = model(input_ids=torch.tensor([ids[3]]), output_hidden_states=True).hidden_states[-1][0, -1].numpy()
    assert np.allclose(shared[-1][3], alone, atol=2e-4)


def test_a_validation_row_in_the_training_decisions_stops_the_fit(tmp_path, files):
    rows = [json.loads(line) for line in (files / "decisions_train.jsonl").read_text().splitlines()]
    leaked = json.loads((files / "decisions_val.jsonl").read_text().splitlines()[0])
    assert leaked["split"] == "val" and all(r["split"] == "train" for r in rows)  # the split travels with a row
    bad = tmp_path / "decisions_train.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in [*rows, leaked]))
    with pytest.raises(d.DecisionError, match="training rows only"):
        train(_config(tmp_path, files, decision_file=str(bad), decision_fit_rows=None, max_steps=1, save_every=1))
