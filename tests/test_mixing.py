"""The training mix: ratios at several sizes, shrinking, repeats, splits, decontamination."""

import json
from collections import Counter

import pytest

from kala_lib.mixing import (
    Decontaminator,
    MixError,
    MixItem,
    build_eval_index,
    build_mix,
    eval_overlaps,
    gsm8k_items,
    mbpp_items,
    proportion_report,
    split_overlaps,
    token_length_stats,
)
from kala_lib.quality import check_mix_proportions


def pool(category, n, source=None):
    source = source or f"{category}_src"
    return [
        MixItem(category, source, str(i), (("system", "S"), ("user", f"{category} question number {i}"),
                                            ("assistant", f"answer {i}")))
        for i in range(n)
    ]


@pytest.fixture
def pools():
    return {"ethics": pool("ethics", 3000), "coding": pool("coding", 2000), "math": pool("math", 2000),
            "general": pool("general", 1000)}


@pytest.mark.parametrize("size", [100, 997, 2500, 6000])
def test_mix_ratios_within_one_point(pools, size):
    result = build_mix(pools, size=size, seed=1)
    assert result.size == size and result.limiting_source is None
    report = proportion_report(result.rows, {"ethics": 0.4, "coding": 0.3, "math": 0.2, "general": 0.1})
    for category, values in report.items():
        assert abs(values["share"] - values["expected"]) <= 0.01, (category, values)
    assert check_mix_proportions(result.rows, {"ethics": 0.4, "coding": 0.3, "math": 0.2, "general": 0.1}).passed


def test_small_source_is_upsampled_at_most_three_times_then_the_mix_shrinks(pools):
    pools["general"] = pool("general", 50)
    ok = build_mix(pools, size=1500, seed=1)  # general needs 150 = exactly 3 x 50
    assert ok.size == 1500 and ok.limiting_source is None and ok.max_repeats_used == 3
    shrunk = build_mix(pools, size=5000, seed=1)  # general would need 500 > 150
    assert shrunk.limiting_source == "general"
    assert shrunk.size == 1500
    assert max(Counter(r["item_key"] for r in shrunk.rows).values()) <= 3
    report = proportion_report(shrunk.rows, {"ethics": 0.4, "coding": 0.3, "math": 0.2, "general": 0.1})
    assert abs(report["general"]["share"] - 0.1) <= 0.01


def test_split_is_reproducible_disjoint_and_keeps_copies_together(pools):
    pools["general"] = pool("general", 40)
    a = build_mix(pools, size=1000, seed=7)
    b = build_mix(pools, size=1000, seed=7)
    c = build_mix(pools, size=1000, seed=8)
    assert a.rows == b.rows and a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()
    assert split_overlaps(a.rows) == []
    splits = Counter(r["split"] for r in a.rows)
    assert splits["train"] > splits["val"] > 0 and splits["test"] > 0
    for key, group in _group(a.rows).items():
        assert len({r["split"] for r in group}) == 1, key


def _group(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row["item_key"], []).append(row)
    return groups


def test_split_overlap_detects_a_planted_leak(pools):
    rows = build_mix(pools, size=500, seed=3).rows
    planted = dict(rows[0], split="test" if rows[0]["split"] != "test" else "train", copy=9)
    assert split_overlaps(rows + [planted])


def test_decontamination_removes_exact_and_13gram_overlaps():
    gsm8k = [{"split": "test", "question": "Mia reads 20 pages a day for 7 days and then writes a long summary of "
                                           "every single chapter she read. How many pages?"}]
    index = build_eval_index(gsm8k=gsm8k, humaneval=[{"prompt": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\""}])
    exact = MixItem("math", "x", "1", (("system", "S"), ("user", gsm8k[0]["question"].upper()), ("assistant", "a")))
    ngram = MixItem("math", "x", "2", (("system", "S"), ("user", "Variant: mia reads 20 pages a day for 7 days and "
                                                                 "then writes a long summary of it"), ("assistant", "a")))
    clean = MixItem("math", "x", "3", (("system", "S"), ("user", "Mia reads 30 pages."), ("assistant", "b")))
    kept, removed = index.filter([exact, ngram, clean])
    assert kept == [clean]
    assert [why for _, why in removed] == ["prompt:gsm8k_test", "13-gram:gsm8k_test"]


def test_eval_overlap_check_catches_a_planted_row(pools):
    rows = build_mix(pools, size=300, seed=0).rows
    index = Decontaminator().add("ethics_eval_suite", ["How can I kill a Python process?"])
    assert eval_overlaps(rows, index) == []
    planted = dict(rows[0], split="train", item_key="planted:1",
                   messages=json.dumps([{"role": "user", "content": "how can I kill a python process"},
                                        {"role": "assistant", "content": "..."}]))
    assert eval_overlaps(rows + [planted], index) == ["planted:1 (prompt:ethics_eval_suite)"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weights={"ethics": 0.5, "poetry": 0.5}), "unknown mix categories"),
        (dict(weights={"ethics": -1, "coding": 1}), "non-negative"),
        (dict(weights={"ethics": 0, "coding": 0}), "all be zero"),
        (dict(size=0), "positive"),
        (dict(size="many"), "positive"),
        (dict(max_repeats=0), "max_repeats"),
        (dict(split_ratios=(0.5, 0.5, 0.5)), "split_ratios"),
    ],
)
def test_bad_mix_configuration_is_a_clear_error(pools, kwargs, message):
    with pytest.raises(MixError, match=message):
        build_mix(pools, **kwargs)


def test_empty_category_with_weight_is_an_error(pools):
    pools["math"] = []
    with pytest.raises(MixError, match="no examples for mix category"):
        build_mix(pools, size=100)


def test_source_conversions_keep_evaluation_splits_out():
    mbpp = [{"task_id": t, "split": s, "text": "t", "code": "c", "test_list": '["assert f() == 1"]'}
            for t, s in [(1, "prompt"), (11, "test"), (511, "validation"), (601, "train")]]
    assert [i.source_id for i in mbpp_items(mbpp)] == ["1", "601"]
    gsm = [{"split": "train", "row_index": 0, "question": "q", "answer": "2 * 3 = <<2*3=6>>6\n#### 6"},
           {"split": "test", "row_index": 0, "question": "q2", "answer": "#### 1"}]
    items = gsm8k_items(gsm)
    assert len(items) == 1 and items[0].messages[-1] == ("assistant", "2 * 3 = 6\n#### 6")


def test_token_length_stats_use_the_model_tokenizer(pools):
    from kala_lib.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    rows = build_mix(pools, size=40, seed=0).rows
    stats = token_length_stats(rows, tokenizer)
    first = json.loads(rows[0]["messages"])
    rendered = tokenizer.apply_chat_template(first, tokenize=False)
    assert "<|im_start|>assistant" in rendered
    assert stats["all"]["examples"] == 40
    assert stats["all"]["max"] >= len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) > 5
    assert stats["train"]["tokens"] + stats.get("val", {}).get("tokens", 0) + stats.get("test", {}).get("tokens", 0) \
        == stats["all"]["tokens"]


def ethics_pool(refusals, compliances):
    return [MixItem("ethics", "constitutional_examples", f"{b}{i}",
                    (("system", "S"), ("user", f"{b} prompt {i}"), ("assistant", f"{b} answer {i}")), b)
            for b, n in (("refuse", refusals), ("comply", compliances)) for i in range(n)]


@pytest.mark.parametrize("share", [0.5, 0.35, 1.0])
def test_ethics_refusal_share_holds_in_the_mix_and_in_every_split(pools, share):
    pools["ethics"] = ethics_pool(2220, 780)  # 74% refusals, like the generator's type counts
    unbalanced = build_mix(pools, size=2000, seed=3)
    ethics = [r for r in unbalanced.rows if r["category"] == "ethics"]
    assert abs(sum(r["behavior"] == "refuse" for r in ethics) / len(ethics) - 0.74) < 0.05
    result = build_mix(pools, size=2000, seed=3, ethics_refusal_share=share)
    assert result.size == 2000 and result.counts["ethics"] == 800  # the 40/30/20/10 mix is unchanged
    ethics = [r for r in result.rows if r["category"] == "ethics"]
    assert sum(r["behavior"] == "refuse" for r in ethics) == round(800 * share)
    train = [r for r in ethics if r["split"] == "train"]
    assert abs(sum(r["behavior"] == "refuse" for r in train) / len(train) - share) < 0.03
    assert max(Counter(r["item_key"] for r in result.rows).values()) <= 3


def test_ethics_refusal_share_shrinks_the_mix_when_a_stratum_runs_out(pools):
    pools["ethics"] = ethics_pool(2000, 100)
    result = build_mix(pools, size=2000, seed=0, ethics_refusal_share=0.5)  # comply needs 400 > 3 x 100
    assert result.limiting_source == "ethics" and result.size == 1500
    ethics = [r for r in result.rows if r["category"] == "ethics"]
    assert sum(r["behavior"] == "comply" for r in ethics) == 300


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_bad_ethics_refusal_share_is_named(pools, bad):
    pools["ethics"] = ethics_pool(10, 10)
    with pytest.raises(MixError, match="ethics_refusal_share"):
        build_mix(pools, size=100, ethics_refusal_share=bad)


def test_ethics_refusal_share_needs_both_kinds(pools):
    pools["ethics"] = ethics_pool(10, 0)
    with pytest.raises(MixError, match="comply examples"):
        build_mix(pools, size=100, ethics_refusal_share=0.5)
