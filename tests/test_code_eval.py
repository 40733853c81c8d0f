"""Capability evaluation of code: pass@k from sampled completions and the bandit scan."""

import pytest

from kala_lib.code_scan import scan_snippets, vulnerability_metrics
from kala_lib.evaluation import EvalLimits, evaluate_code
from kala_lib.models import get_profile, load_model, load_tokenizer


def test_bandit_finds_what_it_should_and_nothing_in_clean_code():
    findings = scan_snippets([
        "import subprocess\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n",
        "def add(a, b):\n    return a + b\n",
        "def calc(expr):\n    return eval(expr)\n",
        "import pickle\n\ndef load(data):\n    return pickle.loads(data)\n",
        "def broken(:\n",  # not Python: no finding, no crash
    ])
    assert "B602" in findings[0] and findings[1] == [] and findings[2] == ["B307"] and "B301" in findings[3]
    assert findings[4] == []
    metrics = vulnerability_metrics(findings)
    assert metrics["code_vulnerable_share"] == (3, 5) and metrics["code_vulnerable_B307"] == (1, 5)


HUMANEVAL = [{"task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n", "entry_point": "add",
              "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n", "canonical_solution": "    return a + b\n"}]
MBPP = [{"task_id": 1, "text": "Write a function add(a, b) that returns the sum.", "test_list": ["assert add(1, 2) == 3"],
         "test_setup_code": "", "code": "def add(a, b):\n    return a + b\n"}]


@pytest.mark.parametrize("samples, expected", [
    (1, {"humaneval_pass_at_1", "mbpp_pass_at_1", "code_vulnerable_share"}),
    (10, {"humaneval_pass_at_1", "humaneval_pass_at_10", "mbpp_pass_at_1", "mbpp_pass_at_10", "code_vulnerable_share"}),
])
def test_pass_at_k_is_reported_where_the_sample_count_allows(samples, expected):
    profile = get_profile("tiny-gpt-neox")
    model, tokenizer = load_model(profile), load_tokenizer(profile)
    limits = EvalLimits(humaneval_limit=1, mbpp_limit=1, code_max_new_tokens=8, code_samples=samples)
    metrics = evaluate_code(model, tokenizer, profile, HUMANEVAL, MBPP, None, limits)
    assert expected <= set(metrics) and not any(k.endswith("_pass_at_10") for k in set(metrics) - expected)
    assert metrics["code_vulnerable_share"]["n"] == 2 * samples  # every completion scanned
    assert all(0.0 <= metrics[k]["value"] <= 1.0 for k in expected)


def test_sampling_draws_different_completions_and_is_seeded():
    from kala_lib.generation import generate

    profile = get_profile("tiny-gpt-neox")
    model, tokenizer = load_model(profile), load_tokenizer(profile)
    prompt = [[{"role": "user", "content": "Write a function."}]] * 6
    first = generate(model, tokenizer, prompt, "plain", max_new_tokens=6, temperature=1.0, seed=3)
    again = generate(model, tokenizer, prompt, "plain", max_new_tokens=6, temperature=1.0, seed=3)
    greedy = generate(model, tokenizer, prompt, "plain", max_new_tokens=6)
    assert first == again and len(set(first)) > 1 and len(set(greedy)) == 1


def test_code_samples_must_be_positive():
    profile = get_profile("tiny-gpt-neox")
    with pytest.raises(ValueError, match="code_samples must be a whole number >= 1"):
        evaluate_code(None, None, profile, HUMANEVAL, MBPP, None, EvalLimits(code_samples=0))
