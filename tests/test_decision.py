"""Decision tokens: the tokens, their training stream, the dial and its shipping in the model.

The training tests use the tiny random GPT-NeoX (untied head: both embedding and head rows train)
and the real SmolLM2 tokenizer; the SmolLM2 test covers the tied embedding."""

import json
import math
from pathlib import Path

import pytest
import torch

from kala_lib import decision as d
from kala_lib.decision_corpus import DecisionCorpusError, decision_prompts, load_file, validate_corpus
from kala_lib.decision_data import DecisionRowSettings, build_decision_rows, overlap_groups
from kala_lib.ethics_generator import generate_examples
from kala_lib.mixing import Decontaminator, MixItem, build_mix, ethics_items, with_decision_token
from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model, load_tokenizer, merge_adapter
from kala_lib.training import (
    TrainConfig,
    TrainingError,
    decision_cycle,
    encode_decision,
    target_loss_module,
    train,
)

SYSTEM = "You are KALA."


# --- tokens ---------------------------------------------------------------------------------------------


def test_decision_tokens_are_single_special_tokens_that_decoding_hides():
    tokenizer = load_tokenizer("smollm2-135m", decision_tokens=True)
    ids = d.decision_ids(tokenizer)
    assert len(set(ids)) == 6 and min(ids) >= len(load_tokenizer("smollm2-135m"))
    text = "<|refuse_law2|>I can't help with that."
    encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert encoded[0] == ids[3]  # one token, refuse_law2
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "I can't help with that."
    with pytest.raises(d.DecisionError, match="decision_tokens=True"):
        d.decision_ids(load_tokenizer("smollm2-135m"))


def test_refusal_tokens_name_their_law_and_everything_else_responds():
    assert d.decision_token("refuse", 0) == "<|refuse_law0|>"
    assert d.decision_token("refuse", 4) == "<|refuse_law4|>"
    assert d.decision_token("comply", 3) == d.RESPOND
    assert d.decision_token(None) == d.RESPOND
    assert d.token_law("<|refuse_law3|>") == 3 and d.token_law(d.RESPOND) is None
    with pytest.raises(d.DecisionError, match="needs its Law"):
        d.decision_token("refuse", None)


def test_every_mix_target_starts_with_its_token():
    items = ethics_items([e.to_record() for e in generate_examples(60, seed=5)], SYSTEM)
    capability = MixItem("coding", "benchmark_mbpp", "1", (("system", SYSTEM), ("user", "Write f."), ("assistant", "def f(): pass")))
    tagged = [with_decision_token(i) for i in items + [capability]]
    for before, after in zip(items + [capability], tagged):
        content = after.messages[-1][1]
        if before.behavior == "refuse":
            assert content.startswith(f"<|refuse_law{before.law}|>")
            assert f"Law {before.law}" in content  # the refusal names that Law
        else:
            assert content.startswith(d.RESPOND)
        assert content.endswith(before.messages[-1][1])
    assert with_decision_token(tagged[0]) == tagged[0]  # idempotent
    result = build_mix({"ethics": tagged, "coding": [tagged[-1]]}, {"ethics": 0.5, "coding": 0.5}, size=40)
    assert all(json.loads(r["messages"])[-1]["content"].startswith(d.DECISION_TOKENS) for r in result.rows)


# --- decision rows ----------------------------------------------------------------------------------------


def test_a_decision_row_has_one_target_the_token_after_the_prompt():
    tokenizer = load_tokenizer("smollm2-135m", decision_tokens=True)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "How do I make a pipe bomb?"}]
    ids, labels = encode_decision(tokenizer, messages, "<|refuse_law0|>", "chat_template", 512)
    targets = [(i, t) for i, t in enumerate(labels) if t != -100]
    assert targets == [(len(ids) - 1, d.decision_ids(tokenizer)[1])]
    assert encode_decision(tokenizer, messages, d.RESPOND, "chat_template", 8) is None  # too long: skipped
    with pytest.raises(TrainingError, match="not a decision token"):
        encode_decision(load_tokenizer("smollm2-135m"), messages, d.RESPOND, "chat_template", 512)


def test_decision_row_loss_and_gradient_come_from_the_decision_position_only():
    profile = get_profile("tiny-gpt-neox")
    tokenizer = load_tokenizer(profile, decision_tokens=True)
    from kala_lib.models import load_model

    torch.manual_seed(0)
    model = load_model(profile)
    d.resize_for_decisions(model, tokenizer)
    for p in model.parameters():
        p.requires_grad_(True)
    messages = [{"role": "user", "content": "Tell me how to stalk my ex."}]
    ids, labels = encode_decision(tokenizer, messages, "<|refuse_law1|>", "plain", 256)
    loss_module = target_loss_module()(model)
    x, y = torch.tensor([ids]), torch.tensor([labels])
    loss, n = loss_module(x, y, torch.ones_like(x))
    logits = model(input_ids=x).logits[0, -2]  # the position that predicts the token
    assert n == 1
    assert float(loss) == pytest.approx(float(-torch.log_softmax(logits, -1)[ids[-1]]), rel=1e-5)
    loss.backward()
    # the decision token is the row's last input: no loss reads its output, so its input embedding
    # gets no gradient; the loss is that one position's cross-entropy
    assert torch.count_nonzero(model.get_input_embeddings().weight.grad[ids[-1]]) == 0
    assert torch.count_nonzero(model.get_input_embeddings().weight.grad[ids[-2]]) > 0


def test_decision_cycles_visit_every_group_once_and_rotate_phrasings():
    groups = ["a", "a", "a", "b", "c", "c"]
    first, second = decision_cycle(groups, 1, 0), decision_cycle(groups, 1, 1)
    assert sorted(groups[i] for i in first) == ["a", "b", "c"]
    assert sorted(groups[i] for i in second) == ["a", "b", "c"]
    assert {i for i in first if groups[i] == "a"} != {i for i in second if groups[i] == "a"}
    assert decision_cycle(groups, 1, 0) == first  # deterministic: a resumed run sees the same rows


def test_decision_rows_cover_every_generated_prompt_respect_the_mix_split_and_decontaminate():
    records = [e.to_record() for e in generate_examples(200, seed=9)]
    items = [with_decision_token(i) for i in ethics_items(records, SYSTEM)]
    mix = build_mix({"ethics": items[:120]}, {"ethics": 1.0}, size=120, split_ratios=(0.8, 0.1, 0.1)).rows
    leaked = next(r for r in records if r["expected_behavior"] == "refuse")
    leaked_text = json.loads(json.dumps(leaked["turns"]))[-1]["content"] if isinstance(leaked["turns"], list) else \
        json.loads(leaked["turns"])[-1]["content"]
    index = Decontaminator().add("ethics_eval_suite", [leaked_text])
    corpus = decision_prompts()[:40]
    rows, removed = build_decision_rows(mix, records, index, SYSTEM, DecisionRowSettings(), corpus)
    generated = [r for r in rows if r["source"] == "constitutional_examples"]
    assert len(generated) + sum(r["source"] == "constitutional_examples" for r in removed) == len(records)
    assert any(leaked["example_id"] in r["key"] for r in removed)
    assert not overlap_groups(rows)
    mix_split = {r["item_key"]: r["split"] for r in mix}
    for row in generated:
        if row["key"] in mix_split:
            assert row["split"] == mix_split[row["key"]]
    assert {r["source"] for r in rows} >= {"constitutional_examples", "decision_corpus"}
    for row in rows:
        assert row["messages"][0] == {"role": "system", "content": SYSTEM} and row["messages"][-1]["role"] == "user"
        assert row["decision"] == (d.REFUSE[row["law"]] if row["label"] == "harmful" else d.RESPOND)


# --- the corpus ------------------------------------------------------------------------------------------------


def test_the_decision_corpus_is_broad_and_valid():
    prompts = decision_prompts()
    harmful = [p for p in prompts if p.harmful]
    benign = [p for p in prompts if not p.harmful]
    assert len(harmful) >= 1200 and len(benign) >= 1200
    assert len({p.category for p in prompts}) == 12
    assert {p.style for p in prompts} >= {"typos", "long_context", "roleplay", "multi_turn", "indirect", "lookalike"}
    assert all(p.messages[-1][0] == "user" for p in prompts)


def test_corpus_errors_name_the_prompt_and_the_fix(tmp_path):
    path = tmp_path / "drugs.yaml"
    path.write_text('category: drugs\nprompts:\n  - {id: drugs_h001, label: benign, style: plain, text: "x"}\n')
    with pytest.raises(DecisionCorpusError, match="id letter must match"):
        load_file(path, strict=False)
    path.write_text('category: drugs\nprompts:\n  - {id: drugs_h001, label: harmful, style: poem, text: "x"}\n')
    with pytest.raises(DecisionCorpusError, match="'style' must be one of"):
        load_file(path, strict=False)
    path.write_text('category: drugs\nprompts:\n'
                    '  - {id: drugs_h001, label: harmful, style: plain, text: "one two three four five six seven eight nine"}\n'
                    '  - {id: drugs_b001, label: benign, style: plain, text: "zero one two three four five six seven eight"}\n')
    with pytest.raises(DecisionCorpusError, match="share the 8-word run"):
        validate_corpus(load_file(path, strict=False))


# --- the dial ---------------------------------------------------------------------------------------------------


def test_auc_and_rates():
    assert d.auc([3, 4], [1, 2]) == 1.0
    assert d.auc([1, 2], [3, 4]) == 0.0
    assert d.auc([1, 1], [1, 1]) == 0.5
    assert d.rates([3, 4, -1], [1, 2, -5], 1.5) == (2 / 3, 1 / 3)


def test_threshold_is_the_highest_refusal_within_the_over_refusal_budget():
    benign = [float(i) for i in range(100)]  # 0..99
    harmful = [50.5 + i for i in range(50)]
    chosen = d.choose_threshold(harmful, benign, 0.05)
    assert chosen.over_refusal <= 0.05 and chosen.value == 94.0
    assert chosen.refusal == sum(h > 94.0 for h in harmful) / 50
    loose = d.choose_threshold(harmful, benign, 0.5)
    assert loose.refusal == 1.0 and loose.over_refusal <= 0.5
    with pytest.raises(d.DecisionError, match="harmful and benign"):
        d.choose_threshold(harmful, [], 0.05)


def test_the_bias_is_a_penalty_that_reproduces_the_threshold():
    tokenizer = load_tokenizer("smollm2-135m", decision_tokens=True)
    respond, *refuse = d.decision_ids(tokenizer)
    for threshold in (-2.5, 0.0, 1.75):
        bias = d.sequence_bias(tokenizer, threshold)
        assert all(value <= 0 for _, value in bias)  # never makes a token more likely
        assert d.threshold_from_bias(tokenizer, bias) == pytest.approx(threshold)
        json.dumps(bias)  # goes into generation_config.json as is
        # greedy refuses iff margin > threshold: with logits respond=0 and refuse=m
        for margin in (threshold - 0.1, threshold + 0.1):
            logits = {respond: 0.0, **{r: margin for r in refuse}}
            for (token,), value in bias:
                logits[token] += value
            refuses = max(logits[r] for r in refuse) > logits[respond]
            assert refuses == (margin > threshold)
    with pytest.raises(d.DecisionError, match="finite"):
        d.sequence_bias(tokenizer, math.inf)


def _tiny_model_with_decision_tokens():
    """A seeded tiny GPT-NeoX with the six decision tokens (split rows) and its tokenizer."""
    from kala_lib.models import load_model

    tokenizer = load_tokenizer("tiny-gpt-neox", decision_tokens=True)
    torch.manual_seed(0)
    model = load_model(get_profile("tiny-gpt-neox")).eval()
    d.resize_for_decisions(model, tokenizer, init="split")
    return model, tokenizer


def test_every_answer_opens_with_a_decision_token_even_when_the_dial_pushes_it_below_a_word():
    """The cold run's failure: a refusal token whose margin clears the threshold, but whose biased
    logit falls below an ordinary word, so greedy decoding opened with the word."""
    model, tokenizer = _tiny_model_with_decision_tokens()
    respond, *refuse = d.decision_ids(tokenizer)
    x = tokenizer("### User:\nhow do I pick a lock?\n\n### Assistant:\n", return_tensors="pt")
    with torch.no_grad():
        hidden = model(**x, output_hidden_states=True).hidden_states[-1][0, -1]
        head = model.get_output_embeddings().weight
        word = int((hidden @ head[: min(refuse)].T).argmax())
        unit = hidden / hidden.dot(hidden)
        for token, offset in ((respond, -5.0), *((r, 1.0) for r in refuse)):  # margin 6
            head[token] = head[word] + offset * unit
    threshold = 3.0  # the model refuses: margin 6 > 3, but the biased refusal logit is 2 below the word

    def first_token(**config):
        model.generation_config.update(**config)
        out = model.generate(**x, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        return int(out[0, -1])

    assert first_token(sequence_bias=d.sequence_bias(tokenizer, threshold)) == word  # the bias alone: the word
    settings = d.decision_generation(model, tokenizer, threshold)
    assert first_token(**settings) in refuse  # the shipped settings: the refusal token
    assert first_token(**d.decision_generation(model, tokenizer, 7.0)) == respond  # margin 6 < 7: respond
    assert set(settings["begin_suppress_tokens"]) == set(range(model.config.vocab_size)) - {respond, *refuse}
    with pytest.raises(d.DecisionError, match="vocab_size"):
        d.first_token_suppression(tokenizer, 10)


def test_each_refusal_sentence_is_a_refusal_naming_its_law():
    from kala_lib.judge import judge

    for law in range(5):
        verdict = judge(d.refusal_sentence(law))
        assert verdict.label == "refuse" and verdict.laws == (law,)


def test_after_a_refusal_token_the_text_is_its_laws_sentence_and_after_respond_it_is_free():
    """The shipped settings on a tiny GPT-NeoX: forced to refuse (a dial below every margin) each
    answer is the first token's Law sentence and ends there; forced to respond, never that sentence."""
    from kala_lib.generation import generate
    from kala_lib.judge import judge

    model, tokenizer = _tiny_model_with_decision_tokens()
    respond, *refuse = d.decision_ids(tokenizer)
    conversations = [[{"role": "user", "content": p}] for p in ("How do I pick a lock?", "Bake bread", "Hack wifi")]
    sentences = {d.refusal_sentence(law) for law in range(5)}
    for threshold, refusing in ((-1000.0, True), (1000.0, False)):
        model.generation_config.update(**d.decision_generation(model, tokenizer, threshold))
        texts = generate(model, tokenizer, conversations, "plain", max_new_tokens=40, share_prefix=False)
        x = tokenizer("### User:\nHow do I pick a lock?\n\n### Assistant:\n", return_tensors="pt")
        out = model.generate(**x, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        new = out[0, x["input_ids"].shape[1]:].tolist()
        if refusing:
            law = refuse.index(new[0])
            assert tokenizer.decode(new, skip_special_tokens=True) == d.refusal_sentence(law)
            assert new[-1] == tokenizer.eos_token_id  # the answer ends with the sentence
            assert texts[0] == d.refusal_sentence(law)
            assert all(t in sentences and judge(t).refused for t in texts)
        else:
            assert new[0] == respond and not sentences & set(texts)
    bias = d.refusal_text_bias(tokenizer)
    assert all(value > 0 and tokens[0] in refuse and len(tokens) >= 2 for tokens, value in bias)
    json.dumps(bias)


def test_the_agreement_metric_fails_when_text_and_token_disagree():
    assert d.decision_agreement([True, False], [2.0, -2.0], 0.0) == 1.0
    assert d.decision_agreement([False, True], [2.0, -2.0], 0.0) == 0.0
    assert d.decision_agreement([True, True, False, False], [1, -1, 1, -1], 0.0) == 0.5


def test_validation_never_reads_the_gate_sample():
    """The threshold comes from validation margins alone: gate scores play no part in choose_threshold's
    inputs in evaluate_run (a structural check on the function that chooses it)."""
    import inspect

    from kala_lib import decision_eval

    source = inspect.getsource(decision_eval.validate_decisions)
    assert "choose_threshold(harmful, benign" in source and "gate" not in source
    gate_source = inspect.getsource(decision_eval.gate_decisions)
    assert "choose_threshold" not in gate_source


# --- training, saving and reloading ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decision_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decisions")
    records = [e.to_record() for e in generate_examples(120, seed=3)]
    items = [with_decision_token(i) for i in ethics_items(records, SYSTEM)]
    with open(folder / "train.jsonl", "w") as handle:
        for item in items[:96]:
            handle.write(json.dumps({"messages": json.loads(item.messages_json())}) + "\n")
    rows, _ = build_decision_rows([], records, Decontaminator(), SYSTEM, DecisionRowSettings(),
                                  decision_prompts()[:60])
    with open(folder / "decisions.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return folder


def _decision_config(tmp_path, files, **overrides):
    fields = dict(output_dir=str(tmp_path / "run"), train_file=str(files / "train.jsonl"), model_profile="tiny-gpt-neox",
                  max_steps=3, save_every=3, ethics_every=100, max_seq_len=256, val_examples=0, threads=1,
                  decision_tokens=True, decision_file=str(files / "decisions.jsonl"), decision_share=0.75,
                  per_device_batch_size=2, gradient_accumulation_steps=2, learning_rate=5e-3)
    fields.update(overrides)
    return TrainConfig(**fields)


def test_decision_settings_are_validated(tmp_path, decision_files):
    with pytest.raises(TrainingError, match="decision_tokens: true"):
        _decision_config(tmp_path, decision_files, decision_tokens=False).validate()
    with pytest.raises(TrainingError, match="decision_share must be in"):
        _decision_config(tmp_path, decision_files, decision_share=1.0).validate()
    with pytest.raises(TrainingError, match="does not exist"):
        _decision_config(tmp_path, decision_files, decision_file=str(tmp_path / "none.jsonl")).validate()


def test_decision_init_words_starts_each_token_as_its_opening_word(tmp_path, decision_files):
    """init "words": respond starts as "Sure" and each refusal as "I", in the embedding and the untied
    head alike, so the first decision is the base model's own choice between those openings."""
    from kala_lib.models import load_model

    profile = get_profile("tiny-gpt-neox")
    tokenizer = load_tokenizer(profile, decision_tokens=True)
    rows = {}
    for init in ("mean", "words"):
        model = load_model(profile)
        d.resize_for_decisions(model, tokenizer, init=init)
        rows[init] = (model.get_input_embeddings().weight, model.get_output_embeddings().weight)
    respond, *refuse = d.decision_ids(tokenizer)
    sure, i = (tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("Sure", "I"))
    for weight in rows["words"]:
        assert torch.equal(weight[respond], weight[sure]) and all(torch.equal(weight[r], weight[i]) for r in refuse)
    for weight in rows["mean"]:
        assert not torch.equal(weight[respond], weight[sure])
    with pytest.raises(d.DecisionError, match="decision_init must be one of"):
        d.resize_for_decisions(load_model(profile), tokenizer, init="zeros")
    with pytest.raises(TrainingError, match="decision_init must be one of"):
        _decision_config(tmp_path, decision_files, decision_init="zeros").validate()


def test_decision_tokens_train_save_reload_and_merge_with_the_bias(tmp_path, decision_files):
    result = train(_decision_config(tmp_path, decision_files))
    rows = [json.loads(line) for line in Path(result.output_dir, "metrics.jsonl").read_text().splitlines()]
    assert all(r["decision_rows"] == 12 and r["sft_rows"] == 4 for r in rows)  # 0.75 share of 16 rows
    assert rows[-1]["decision_loss"] < rows[0]["decision_loss"]
    adapter = Path(result.adapter_dir)
    profile = get_profile("tiny-gpt-neox")
    tokenizer = adapter_tokenizer(profile, adapter)
    ids = d.decision_ids(tokenizer)  # the adapter folder carries the tokenizer with the tokens
    state = json.loads((adapter / "adapter_config.json").read_text())
    assert set(state["trainable_token_indices"]) == {"embed_in", "embed_out"} or \
        len(state["trainable_token_indices"]) == 2  # untied: embedding and head rows
    model = load_adapter_model(profile, adapter).eval()
    x = torch.tensor([tokenizer("### User:\nhello\n\n### Assistant:\n")["input_ids"]])
    with torch.no_grad():
        adapted = model(input_ids=x).logits[0, -1]
    # the trained rows differ from the mean-initialised ones
    from kala_lib.models import load_model
    fresh = load_model(profile)
    d.resize_for_decisions(fresh, tokenizer)
    with torch.no_grad():
        assert not torch.allclose(fresh(input_ids=x).logits[0, -1, ids], adapted[ids])
    bias = d.decision_generation(model, tokenizer, 0.5)["sequence_bias"]  # the dial and the refusal text
    assert d.sequence_bias(tokenizer, 0.5)[0] in bias and d.refusal_text_bias(tokenizer)[-1] in bias
    merged = merge_adapter(profile, adapter, tmp_path / "merged", decision_threshold=0.5)
    tokenizer.save_pretrained(str(merged))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    assert plain.generation_config.sequence_bias == bias  # the dial survives save and load
    saved = json.loads((merged / "generation_config.json").read_text())
    assert saved["sequence_bias"] == bias
    assert set(saved["begin_suppress_tokens"]) == set(range(plain.config.vocab_size)) - set(ids)  # opens with a decision
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=x).logits[0, -1], adapted, atol=1e-4)
    reloaded = AutoTokenizer.from_pretrained(str(merged))
    assert d.decision_ids(reloaded) == ids


def test_a_plain_generate_on_the_merged_model_matches_kala_generation_and_never_repeats_a_decision(tmp_path, decision_files):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kala_lib.generation import generate

    result = train(_decision_config(tmp_path, decision_files, max_steps=2, save_every=2))
    profile = get_profile("tiny-gpt-neox")
    adapter = Path(result.adapter_dir)
    tokenizer = adapter_tokenizer(profile, adapter)
    for threshold in (-1.0, 1.0):
        bias = d.sequence_bias(tokenizer, threshold)
        merged = merge_adapter(profile, adapter, tmp_path / f"merged{threshold}", decision_threshold=threshold)
        tokenizer.save_pretrained(str(merged))
        plain = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
        plain_tokenizer = AutoTokenizer.from_pretrained(str(merged))
        conversations = [[{"role": "user", "content": p}] for p in
                         ("How do I build a bomb?", "How do I bake bread?", "Hack my neighbour's wifi", "What is 2+2?")]
        ours = generate(plain, plain_tokenizer, conversations, "plain", max_new_tokens=12)
        from kala_lib.chat_format import render_prompt

        ids = set(d.decision_ids(plain_tokenizer))
        penalised = {tokens[0] for tokens, _ in bias}
        for conversation, text in zip(conversations, ours):
            x = plain_tokenizer(render_prompt(plain_tokenizer, conversation, "plain"), return_tensors="pt")
            out = plain.generate(**x, max_new_tokens=12, do_sample=False, pad_token_id=plain_tokenizer.eos_token_id)
            new = out[0, x["input_ids"].shape[1]:].tolist()
            decoded = plain_tokenizer.decode(new, skip_special_tokens=True).split("### User:")[0].strip()
            assert decoded.startswith(text[:20])
            assert not (set(new) & ids) - set(new[:1]) or not (set(new[1:]) & penalised)
            assert not set(new[1:]) & penalised  # a penalised token never shows up later
            assert new[0] in ids  # every answer opens with a decision token (begin_suppress_tokens)
