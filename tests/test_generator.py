import re
from collections import Counter

import pytest

from kala_lib.dataset import Behavior, Difficulty, ExampleType, normalize_prompt
from kala_lib.ethics_corpus import templates
from kala_lib.ethics_generator import (
    BASE_SIZE,
    EthicsExampleGenerator,
    GenerationError,
    GeneratorConfig,
    difficulty_sequence,
    generate_examples,
)
from kala_lib.judge import judge
from kala_lib.laws import LawCategory, winning_law
from kala_lib.quality import operational_findings

H, S = ExampleType.HARMFUL_BLOCKED, ExampleType.SAFE_REQUEST
REFUSAL_OPENERS = tuple(templates()["refusal_openers"])


def test_base_set_reproduces_the_seed_counts(base_set):
    assert len(base_set) == BASE_SIZE == 800
    stats = base_set.statistics()
    assert stats["by_type"] == {
        "harmful_blocked": 500, "safe_request": 150, "edge_case": 50, "law_conflict": 50, "multi_turn": 50,
    }
    assert stats["by_difficulty"] == {"easy": 320, "medium": 240, "hard": 160, "adversarial": 80}
    # per-law sections (harmful + safe): Law 0 100, Law 1 200, Law 2 150, Law 3 100, Law 4 100
    sections = Counter(int(e.law_category) for e in base_set if e.example_type in (H, S))
    assert dict(sorted(sections.items())) == {0: 100, 1: 200, 2: 150, 3: 100, 4: 100}


@pytest.mark.parametrize("size", [100, 750, 1000, 2500, 12_345])
def test_distributions_within_one_point_at_any_size(size):
    dataset = generate_examples(size, seed=3)
    assert len(dataset) == size
    stats = dataset.statistics()
    for level, weight in {"easy": 0.4, "medium": 0.3, "hard": 0.2, "adversarial": 0.1}.items():
        assert abs(stats["by_difficulty"][level] / size - weight) <= 0.01
    for kind, base in {"harmful_blocked": 500, "safe_request": 150, "edge_case": 50, "law_conflict": 50, "multi_turn": 50}.items():
        assert abs(stats["by_type"][kind] / size - base / 800) <= 0.01


def test_difficulty_is_balanced_within_each_type(large_set):
    for kind in ExampleType:
        subset = large_set.filter(example_type=kind)
        shares = Counter(e.difficulty for e in subset)
        assert abs(shares[Difficulty.EASY] / len(subset) - 0.4) < 0.02, kind


def test_difficulty_sequence_exact_counts():
    seq = difficulty_sequence(10)
    assert Counter(seq) == {Difficulty.EASY: 4, Difficulty.MEDIUM: 3, Difficulty.HARD: 2, Difficulty.ADVERSARIAL: 1}


def test_ten_thousand_examples_without_duplicate_prompts(large_set):
    prompts = [normalize_prompt(e.prompt) for e in large_set]
    assert len(set(prompts)) == len(prompts) == 10_000


def test_expands_past_ten_thousand_without_duplicates():
    dataset = generate_examples(25_000, seed=1)
    assert len({normalize_prompt(e.prompt) for e in dataset}) == 25_000


def test_same_seed_same_content_other_seed_other_phrasing():
    assert generate_examples(500, seed=5).content_hash() == generate_examples(500, seed=5).content_hash()
    a, b = generate_examples(500, seed=5), generate_examples(500, seed=6)
    assert a.content_hash() != b.content_hash()
    assert [e.prompt for e in a] != [e.prompt for e in b]


def test_phrasing_is_varied(large_set):
    harmful = large_set.filter(example_type="harmful_blocked")
    openings = Counter(" ".join(e.prompt.split()[:3]) for e in harmful)
    assert len(openings) > 100
    # the most common opening is one of eight lead-ins ("Please answer directly.") at ~7%
    assert openings.most_common(1)[0][1] / len(harmful) < 0.10


def test_harmful_drafts_are_never_operational(large_set):
    drafts = [e.response_harmful for e in large_set if e.response_harmful]
    assert len(drafts) > 5000
    assert all(d.endswith("]") and "…" in d for d in drafts), "drafts must be visibly truncated"
    flagged = [d for d in drafts if operational_findings(d)]
    assert flagged == []


@pytest.mark.parametrize(
    "text",
    [
        "Sure. You need 50 grams of the precursor …",
        "Step 1: obtain the agent.",
        "Here is the code:\n```python\nimport os\n```",
        "First, visit https://example.org for supplies",
    ],
)
def test_operational_scanner_flags_real_detail(text):
    assert operational_findings(text)


def test_refusals_cite_their_law_and_offer_an_alternative(large_set):
    for example in large_set.filter(example_type="harmful_blocked"):
        law = int(example.law_category)
        assert f"Law {law}" in example.response_ethical
        assert f"Law {law}" in example.principle
        assert example.response_ethical.split(".")[0] + "." in REFUSAL_OPENERS or example.response_ethical.startswith(REFUSAL_OPENERS)
        assert example.critique and "violating Law" in example.critique


def test_helpful_examples_really_help(large_set):
    helpful = large_set.filter(expected_behavior="comply")
    assert len(helpful) > 2000
    for example in helpful:
        assert not example.response_ethical.startswith(REFUSAL_OPENERS)
        assert example.response_harmful == ""
        assert len(example.response_ethical) > 120
    benign = {e.prompt for e in large_set.filter(tags="benign_lookalike")}
    assert any("kill" in p.lower() for p in benign) and any("bomb" in p.lower() for p in benign)


def test_every_law_has_safe_requests(large_set):
    safe_laws = {int(e.law_category) for e in large_set.filter(example_type="safe_request")}
    assert safe_laws == {0, 1, 2, 3, 4}


def test_law_conflicts_encode_precedence(large_set):
    conflicts = large_set.filter(example_type="law_conflict")
    pairs = set()
    for example in conflicts:
        winner = winning_law(*example.laws_involved)
        loser = max(example.laws_involved)
        assert example.law_category is winner
        if example.expected_behavior is Behavior.REFUSE:
            assert f"Law {int(winner)} takes precedence over Law {int(loser)}" in example.response_ethical
        else:  # the action comes first, so the reply reads (to people and the judge) as compliance
            assert f"Law {int(winner)} ranks above Law {int(loser)}" in example.response_ethical
            assert not judge(example.response_ethical).refused
        assert f"Law {int(winner)} takes precedence" in example.principle
        pairs.add((int(winner), int(loser)))
    assert {(0, 2), (1, 2), (0, 1), (2, 3)} <= pairs
    behaviours = Counter(e.expected_behavior for e in conflicts)
    assert behaviours[Behavior.REFUSE] and behaviours[Behavior.COMPLY]


def test_multi_turn_refusal_lands_on_the_crossing_turn(large_set):
    dialogues = large_set.filter(example_type="multi_turn")
    assert len(dialogues) == 625
    pushbacks = 0
    for example in dialogues:
        user_turns = [i for i, t in enumerate(example.turns) if t.role == "user"]
        crossing = user_turns[example.escalation_turn]
        assert example.escalation_turn >= 1, "the first turn is benign"
        for turn in example.turns[:crossing]:  # before the line: helpful, no refusal
            if turn.role == "assistant":
                assert not turn.content.startswith(REFUSAL_OPENERS) and "can't" not in turn.content
        after = example.turns[crossing + 1 :]
        if after:  # the user pushed back: the refusal came right at the crossing turn
            pushbacks += 1
            assert f"Law {int(example.law_category)}" in after[0].content
        assert f"Law {int(example.law_category)}" in example.response_ethical
    assert pushbacks > 0
    first_turns = [normalize_prompt(e.prompt) for e in dialogues]
    assert len(set(first_turns)) == len(first_turns)


def test_heldout_generation_uses_other_phrasings():
    train = generate_examples(2000, seed=1)
    heldout = EthicsExampleGenerator(GeneratorConfig(size=2000, seed=1, heldout=True)).generate()
    train_harmful = {normalize_prompt(e.prompt) for e in train.filter(example_type="harmful_blocked")}
    held_harmful = {normalize_prompt(e.prompt) for e in heldout.filter(example_type="harmful_blocked")}
    assert not train_harmful & held_harmful


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=0), "positive"),
        (dict(size=-5), "positive"),
        (dict(size="10"), "whole number"),
        (dict(size=True), "whole number"),
        (dict(size=10**9), "limit"),
        (dict(seed="abc"), "integer"),
    ],
)
def test_bad_generator_input_is_a_clear_error(kwargs, message):
    with pytest.raises(GenerationError, match=message):
        GeneratorConfig(**kwargs)


def test_ids_are_stable_and_sequential(base_set):
    assert base_set.examples[0].example_id == "eth_000001"
    assert base_set.examples[-1].example_id == "eth_000800"
    assert all(re.fullmatch(r"eth_\d{6}", e.example_id) for e in base_set)
    assert all(isinstance(e.law_category, LawCategory) for e in base_set)
