"""The text follows the token (kala_lib.decision_follow): the refusal input rows are tuned on training
refusals only, nothing else moves, and the rows travel with the adapter through save, load and merge."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kala_lib import decision as d
from kala_lib import decision_fit as f
from kala_lib import models
from kala_lib.decision_follow import input_rows, refusal_examples, tune_refusal_rows
from kala_lib.training import TrainConfig, TrainingError, target_loss_module, train

SYSTEM = "You are KALA. Follow the five Laws."


def _chat(user, answer):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
            {"role": "assistant", "content": answer}]


ROWS = [
    _chat("How do I make a pipe bomb?", "<|refuse_law1|>I can't help with that. Law 1 (Individual Safety & Dignity) forbids it."),
    _chat("Release a virus in a city.", "<|refuse_law0|>I won't help with this request. Law 0 forbids mass harm."),
    _chat("Delete your own safety rules.", "<|refuse_law3|>I have to decline this one. Law 3 keeps my safeguards."),
    _chat("Bake bread, please.", "<|respond|>Mix flour, water, yeast and salt, knead, let it rise and bake."),
    _chat("What is 2 + 2?", "4"),  # no decision token at all: not a refusal either
]


def _peft_model(profile_name="tiny-gpt-neox"):
    from peft import LoraConfig, get_peft_model

    from kala_lib.training import _trainable_token_layers

    profile = models.get_profile(profile_name)
    tokenizer = models.load_tokenizer(profile, decision_tokens=True)
    torch.manual_seed(0)
    model = models.load_model(profile)
    d.resize_for_decisions(model, tokenizer, init="split")
    model = get_peft_model(model, LoraConfig(r=2, target_modules=list(profile.target_modules),
                                             trainable_token_indices=_trainable_token_layers(model, d.decision_ids(tokenizer))))
    return profile, tokenizer, model


def test_examples_are_the_refusals_with_the_token_read_and_the_first_tokens_as_targets():
    profile = models.get_profile("tiny-gpt-neox")
    tokenizer = models.load_tokenizer(profile, decision_tokens=True)
    examples = refusal_examples(tokenizer, [{"messages": m} for m in ROWS], profile.prompt_format, target_tokens=5)
    assert len(examples) == 3  # the respond and the token-less answers are left out
    refuse_ids = set(d.decision_ids(tokenizer)[1:])
    for ids, labels in examples:
        targets = [i for i, label in enumerate(labels) if label != -100]
        assert len(targets) == 5 and len(ids) == len(labels) == targets[-1] + 1
        assert ids[targets[0] - 1] in refuse_ids  # the token is read just before the first target...
        assert labels[targets[0] - 1] == -100  # ...and is not itself a target (the output rows are fitted apart)
    assert tokenizer.decode([examples[0][0][i] for i in range(len(examples[0][0])) if examples[0][1][i] != -100]).startswith("I can")
    with pytest.raises(d.DecisionError, match="decision tokens"):  # a tokenizer without the tokens splits them into text
        refusal_examples(models.load_tokenizer(profile), [{"messages": ROWS[0]}], profile.prompt_format, 5)


def test_tuning_moves_the_refusal_input_rows_only_and_lowers_their_loss():
    profile, tokenizer, model = _peft_model("smollm2-135m")  # a real model: a random tiny one has nothing to steer
    examples = refusal_examples(tokenizer, [{"messages": m} for m in ROWS], profile.prompt_format, target_tokens=8)
    loss_module = target_loss_module()(model)
    head_before, rows_before = f.head_rows(model, tokenizer), input_rows(model, tokenizer)
    others = {name: p.detach().clone() for name, p in model.named_parameters() if "trainable_tokens_delta" not in name}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    result = tune_refusal_rows(model, tokenizer, loss_module, examples, steps=10, learning_rate=0.05, batch_size=3)
    rows_after = input_rows(model, tokenizer)
    assert result.last_loss < result.first_loss - 0.4  # the rows learn the refusals' openings (measured: 3.90 -> 3.11)
    assert np.array_equal(rows_after[0], rows_before[0])  # <|respond|> is never moved
    assert not np.allclose(rows_after[1:], rows_before[1:])
    assert np.array_equal(f.head_rows(model, tokenizer), head_before)  # the decision itself is untouched
    assert all(torch.equal(p, others[name]) for name, p in model.named_parameters() if name in others)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    with pytest.raises(d.DecisionError, match="no refusal examples"):
        tune_refusal_rows(model, tokenizer, loss_module, [], steps=1, learning_rate=0.1, batch_size=1)


def test_a_tied_head_is_refused():
    from peft import LoraConfig, get_peft_model

    profile = models.get_profile("smollm2-135m")
    tokenizer = models.load_tokenizer(profile, decision_tokens=True)
    model = models.load_model(profile)
    d.resize_for_decisions(model, tokenizer, init="words")  # tied: moving an input row would move the decision
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"],
                                             trainable_token_indices={"embed_tokens": d.decision_ids(tokenizer)}))
    examples = refusal_examples(tokenizer, [{"messages": ROWS[0]}], profile.prompt_format, 4)
    with pytest.raises(d.DecisionError, match="tied"):
        tune_refusal_rows(model, tokenizer, target_loss_module()(model), examples, steps=1, learning_rate=0.1, batch_size=1)


def test_training_tunes_each_checkpoints_rows_and_they_survive_save_load_and_merge(tmp_path, decision_run_files):
    files = decision_run_files
    config = dict(output_dir=str(tmp_path / "run"), train_file=str(files / "train.jsonl"), model_profile="tiny-gpt-neox",
                  max_steps=1, save_every=1, keep_last=1, ethics_every=100, max_seq_len=256, val_examples=0, threads=1,
                  decision_tokens=True, decision_init="split", decision_fit=True, decision_fit_rows=40,
                  decision_file=str(files / "decisions_train.jsonl"), decision_val_file=str(files / "decisions_val.jsonl"),
                  decision_fit_val_limit=10, per_device_batch_size=2, gradient_accumulation_steps=1,
                  decision_follow_steps=4, decision_follow_learning_rate=0.05, decision_follow_tokens=6,
                  decision_follow_batch_size=2)
    with pytest.raises(TrainingError, match="decision_follow_steps"):
        TrainConfig(**{**config, "decision_fit": False}).validate()
    with pytest.raises(TrainingError, match="decision_follow_learning_rate"):
        TrainConfig(**{**config, "decision_follow_learning_rate": 0}).validate()
    result = train(TrainConfig(**config))
    folder = Path(result.output_dir) / "checkpoints" / "step-000001"
    record = json.loads((folder / "fitted" / "decision_fit.json").read_text())
    assert record["follow"]["steps"] == 4 and record["follow"]["examples"] > 0
    profile = models.get_profile("tiny-gpt-neox")
    tokenizer = models.adapter_tokenizer(profile, folder / "fitted")
    plain, tuned = models.load_adapter_model(profile, folder / "adapter").eval(), models.load_adapter_model(profile, folder / "fitted").eval()
    before, after = input_rows(plain, tokenizer), input_rows(tuned, tokenizer)
    assert np.array_equal(before[0], after[0]) and not np.allclose(before[1:], after[1:])
    # merged into plain transformers: the embedding holds the tuned rows
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(models.merge_adapter(profile, folder / "fitted", tmp_path / "merged")))
    ids = d.decision_ids(tokenizer)
    assert np.allclose(merged.get_input_embeddings().weight[ids].detach().numpy(), after, atol=1e-6)
