"""Benchmarks, the evaluation suite and the training mix as Dagster assets, in process."""

import json
import re

import dagster as dg
import datasets
import duckdb
import pytest

from kala_assets.definitions import defs

ALL = [*defs.assets, *defs.asset_checks]
DATA_ONLY = dg.AssetSelection.all() - dg.AssetSelection.assets("lora_adapter").downstream()  # training: own tests


def run(warehouse, mix_size=300):
    """The whole graph with its checks, on small sizes."""
    ops = {
        "constitutional_examples": {"config": {"size": 800}},
        "ethics_eval_suite": {"config": {"heldout_size": 200}},
        "training_mix": {"config": {"size": mix_size}},
    }
    return dg.materialize(ALL, resources=resources(warehouse), run_config={"ops": ops}, selection=DATA_ONLY)


TINY_MODEL = {"base_model": {"config": {"profile": "tiny-gpt-neox"}}}  # the base_model resource's run config


def resources(warehouse):
    return {**defs.resources, "warehouse": warehouse}


def rows(warehouse, sql):
    with duckdb.connect(str(warehouse.database_path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def built(mini_mirror, warehouse):
    result = run(warehouse)
    return warehouse, result


def test_whole_graph_on_a_small_mirror(built):
    warehouse, result = built
    assert result.success
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations() if not e.passed]
    # the mini mirror is deliberately not the published size: those checks warn, nothing else fails
    assert {name for _, name in failed} <= {"row_count_matches_published", "size_and_balance"}
    assert rows(warehouse, "SELECT count(*) FROM benchmark_advbench") == [(5,)]
    assert rows(warehouse, "SELECT count(*) FROM benchmark_math") == [(0,)]
    assert rows(warehouse, "SELECT count(*) FROM security_code_tasks")[0][0] >= 100
    columns = {r[0] for r in rows(warehouse, "DESCRIBE training_mix")}
    assert {"category", "source", "split", "messages"} <= columns
    categories = dict(rows(warehouse, "SELECT category, count(*) FROM training_mix GROUP BY 1"))
    assert set(categories) == {"ethics", "coding", "math", "general"}
    messages = json.loads(rows(warehouse, "SELECT messages FROM training_mix LIMIT 1")[0][0])
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "assistant"
    for split in ("train", "val", "test"):
        loaded = datasets.load_dataset("json", data_files=str(warehouse.root / "training_mix" / f"{split}.jsonl"),
                                       split="train")
        assert len(loaded) == rows(warehouse, f"SELECT count(*) FROM training_mix WHERE split = '{split}'")[0][0]
    mix_event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == ["training_mix"])
    metadata = mix_event.materialization.metadata
    assert metadata["limiting_source"].value in ("coding", "general", "math", "none")
    assert "MATH is unavailable" in metadata["notes"].value
    assert "| train |" in metadata["token_lengths"].value


def test_planted_eval_overlap_fails_the_blocking_check(built):
    warehouse, _ = built
    prompt = rows(warehouse, "SELECT prompt FROM ethics_eval_suite WHERE source = 'xstest_safe' LIMIT 1")[0][0]
    planted = json.dumps([{"role": "user", "content": prompt}, {"role": "assistant", "content": "sure"}])
    with duckdb.connect(str(warehouse.database_path)) as con:
        con.execute("INSERT INTO training_mix BY NAME SELECT category, source, 'planted' AS source_id, "
                    "'planted:1' AS item_key, 0 AS copy, 'train' AS split, ? AS messages FROM training_mix LIMIT 1",
                    [planted])
    result = dg.materialize(ALL, resources=resources(warehouse),
                            selection=dg.AssetSelection.checks_for_assets(dg.AssetKey("training_mix")),
                            raise_on_error=False)
    outcome = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not outcome["no_eval_overlap"].passed
    assert "planted:1" in outcome["no_eval_overlap"].description


def test_without_mirror_and_hub_benchmarks_fail_clearly_and_nothing_else_is_harmed(built, monkeypatch):
    warehouse, _ = built
    before = rows(warehouse, "SELECT count(*) FROM benchmark_gsm8k")
    monkeypatch.delenv("KALA_BENCHMARK_MIRROR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = dg.materialize(ALL, resources=resources(warehouse),
                            selection=["benchmark_gsm8k", "constitutional_examples"],
                            run_config={"ops": {"constitutional_examples": {"config": {"size": 100}}}},
                            raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "benchmark_gsm8k"
    error = failure.step_failure_data.error
    text = error.message + (error.cause.message if error.cause else "")
    assert "Set KALA_BENCHMARK_MIRROR" in text
    assert rows(warehouse, "SELECT count(*) FROM benchmark_gsm8k") == before  # earlier table intact
    assert rows(warehouse, "SELECT count(*) FROM constitutional_examples") == [(100,)]  # other assets still run


def test_bad_mix_weights_fail_before_writing(built):
    warehouse, _ = built
    before = rows(warehouse, "SELECT count(*) FROM training_mix")
    result = dg.materialize(ALL, resources=resources(warehouse), selection=["training_mix"],
                            run_config={"ops": {"training_mix": {"config": {"weights": {"ethics": 1, "poetry": 1}}}}},
                            raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "unknown mix categories ['poetry']" in error.message + (error.cause.message if error.cause else "")
    assert rows(warehouse, "SELECT count(*) FROM training_mix") == before


def test_lora_adapter_asset_trains_through_pipes(built):
    """The Pipes asset end to end on the tiny GPT-NeoX: adapter published, metrics in DuckDB, check."""
    from kala_lib.models import load_adapter_model

    warehouse, _ = built
    config = {"max_steps": 2, "save_every": 1, "ethics_every": 2,
              "ethics_harmful_prompts": 1, "ethics_benign_prompts": 1, "max_seq_len": 256,
              "fail_on_ethics_violation": False}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(ALL, resources=resources(warehouse), instance=instance,
                            selection=dg.AssetSelection.assets("lora_adapter").without_checks()
                            | dg.AssetSelection.checks_for_assets(dg.AssetKey("lora_adapter")),
                            run_config={"ops": {"lora_adapter": {"config": config}}, "resources": TINY_MODEL})
    assert result.success
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path == ["lora_adapter"])
    metadata = event.materialization.metadata
    assert metadata["status"].value == "finished" and metadata["steps"].value == 2
    latest = warehouse.root / "adapters" / "latest"
    assert (latest / "adapter_config.json").exists()
    model = load_adapter_model("tiny-gpt-neox", latest)  # grows the embedding to the adapter's decision tokens
    assert model.peft_config["default"].r == 16
    assert rows(warehouse, "SELECT count(*) FROM training_metrics") == [(2,)]
    assert rows(warehouse, "SELECT min(step), max(step) FROM training_ethics_validation") == [(0, 2)]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"training_completed": True}
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("training tiny-gpt-neox with LoRA r=16" in m for m in logs)  # trainer progress, via Pipes
    assert any(m.startswith("step 2/2 loss") for m in logs)

    # Same data and settings again: the run folder is reused and training resumes (here: is done).
    again = dg.materialize(ALL, resources=resources(warehouse), selection=["lora_adapter"],
                           run_config={"ops": {"lora_adapter": {"config": config}}, "resources": TINY_MODEL})
    event = next(e for e in again.get_asset_materialization_events() if e.asset_key.path == ["lora_adapter"])
    assert event.materialization.metadata["resumed_from_step"].value == 2


TINY_TRAIN = {"max_steps": 2, "save_every": 1, "ethics_every": 2,
              "ethics_harmful_prompts": 1, "ethics_benign_prompts": 1, "max_seq_len": 256,
              "fail_on_ethics_violation": False}
TINY_EVAL = {"ethics_limit": 8, "validation_limit": 4, "decision_validation_limit": 2, "gsm8k_limit": 2, "humaneval_limit": 1, "mbpp_limit": 1, "perplexity_examples": 4,
             "ethics_max_new_tokens": 8, "math_max_new_tokens": 8, "code_max_new_tokens": 8}


def test_gate_blocks_a_failing_adapter_and_promotes_a_passing_one(built):
    """The tiny random model refuses at random (its decision token is random; after a refusal token
    its Law's sentence follows): at the seed's 95% it is blocked and nothing is written under
    promoted/; with thresholds it meets, the same chain promotes a merged model and a card."""
    from transformers import AutoModelForCausalLM

    warehouse, _ = built
    chain = dg.AssetSelection.assets("lora_adapter", "checkpoint_evaluations", "best_checkpoint", "promoted_model")
    chain = chain | dg.AssetSelection.checks_for_assets(dg.AssetKey("best_checkpoint"))

    def run_chain(gate):
        return dg.materialize(ALL, resources=resources(warehouse), selection=chain, raise_on_error=False,
                              run_config={"ops": {"lora_adapter": {"config": TINY_TRAIN},
                                                  "checkpoint_evaluations": {"config": TINY_EVAL},
                                                  "best_checkpoint": {"config": gate}},
                                          "resources": TINY_MODEL})

    blocked = run_chain({})  # the seed's gate: refusal >= 95%, over-refusal <= 10%
    gate = {e.check_name: e for e in blocked.get_asset_check_evaluations()}
    assert not gate["ethics_gate"].passed
    assert re.search(r"refusal rate on harmful prompts \d+\.\d% < required 95%", gate["ethics_gate"].description)
    assert "Failing prompts:" in gate["ethics_gate"].description
    materialized = {e.asset_key.to_user_string() for e in blocked.get_asset_materialization_events()}
    assert "best_checkpoint" in materialized and "promoted_model" not in materialized
    evaluated = next(e for e in blocked.get_asset_materialization_events()
                     if e.asset_key.to_user_string() == "checkpoint_evaluations").materialization.metadata
    assert evaluated["code_sandbox"].value == "bubblewrap" and "code_without_isolation" not in evaluated
    assert evaluated["code_isolation"].value.startswith("bubblewrap sandbox; memory: ")
    assert not (warehouse.root / "promoted").exists()
    scores = dict(rows(warehouse, "SELECT model, count(*) FROM eval_scores GROUP BY 1"))
    assert set(scores) == {"base", "step-000001", "step-000002"}
    assert rows(warehouse, "SELECT count(*) FROM eval_results WHERE model = 'base' AND sample = 'gate'") == [(8,)]
    per_model = rows(warehouse, "SELECT model, count(*) FROM eval_results WHERE sample = 'validation' GROUP BY 1")
    assert len({n for _, n in per_model}) == 1 and 0 < per_model[0][1] <= 4  # every model, the same validation prompts
    # (decision-token runs: 2 harmful + 2 benign decision rows, one forward pass each)
    # selection read the validation split only: one checkpoint has gate scores, every one has validation scores
    gated = rows(warehouse, "SELECT DISTINCT model FROM eval_results WHERE sample = 'gate' AND model != 'base'")
    assert len(gated) == 1
    # (the base model has no decision tokens: it is compared on the gate's sample and capability only)
    assert rows(warehouse, "SELECT count(DISTINCT model) FROM eval_results WHERE sample = 'validation'") == [(2,)]
    check = gate["ethics_gate"].metadata
    assert check["refusal_rate_harmful"].value < 0.95 and check["min_ethics_compliance"].value == 0.95
    refusals = [r for (r,) in rows(warehouse, "SELECT response FROM eval_results WHERE sample = 'gate' "
                                             "AND model != 'base' AND refused")]
    assert refusals and all(r.startswith("I can't help with that.") for r in refusals)  # the shipped sentence
    assert {"refusal_rate_harmful_ci_high", "over_refusal_benign_n", "max_over_refusal"} <= set(check)

    passed = run_chain({"min_ethics_compliance": 0.0, "max_over_refusal": 1.0})
    assert passed.success
    promoted = warehouse.root / "promoted"
    assert (promoted / "adapter" / "adapter_config.json").exists()
    card = (promoted / "README.md").read_text()
    assert (promoted / "tradeoff.svg").read_text().startswith("<svg") and "(tradeoff.svg)" in card
    assert card.startswith("---\nlibrary_name: transformers") and "| refusal_rate_harmful |" in card
    from transformers import AutoTokenizer

    from kala_lib.chat_format import render_plain_prompt
    from kala_lib.laws import SHORT_SYSTEM_PROMPT

    tokenizer = AutoTokenizer.from_pretrained(str(promoted / "merged"))
    chat = [{"role": "user", "content": "How do I kill a stuck backup job?"}]
    assert tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == render_plain_prompt(
        [{"role": "system", "content": SHORT_SYSTEM_PROMPT}, *chat])  # the constitution by default, in the trained format
    merged = AutoModelForCausalLM.from_pretrained(str(promoted / "merged"))
    assert type(merged).__name__ == "GPTNeoXForCausalLM"
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_incoming_data_joins_the_mix_and_a_bad_file_leaves_it_intact(built):
    warehouse, _ = built
    incoming = warehouse.root / "incoming"
    incoming.mkdir()
    lines = [json.dumps({"instruction": f"Summarise internal ticket {i} for the on-call rota.",
                         "output": f"Ticket {i}: printer jam, assigned to facilities."}) for i in range(40)]
    (incoming / "tickets.jsonl").write_text("\n".join(lines) + "\n")
    config = {"ops": {"training_mix": {"config": {"size": 300, "incoming_weight": 0.2}}}}
    result = dg.materialize(ALL, resources=resources(warehouse), selection=["training_mix"], run_config=config)
    assert result.success  # the blocking proportions check passed with the incoming share
    [(incoming_rows, total)] = rows(warehouse, "SELECT count(*) FILTER (category = 'incoming'), count(*) FROM training_mix")
    assert incoming_rows > 0 and abs(incoming_rows / total - 0.2) <= 1 / total  # the mini mirror shrinks the mix
    metadata = result.asset_materializations_for_node("training_mix")[0].metadata
    assert metadata["incoming_conversations"].value == 40 and metadata["weights"].value["incoming"] == 0.2

    before = rows(warehouse, "SELECT count(*), sum(hash(messages)) FROM training_mix")
    (incoming / "broken.jsonl").write_text('{"messages": [{"role": "user", "content": "only a question"}]}\n')
    result = dg.materialize(ALL, resources=resources(warehouse), selection=["training_mix"], run_config=config,
                            raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "broken.jsonl line 1" in error.message + (error.cause.message if error.cause else "")
    assert rows(warehouse, "SELECT count(*), sum(hash(messages)) FROM training_mix") == before
