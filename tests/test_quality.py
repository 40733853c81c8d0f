"""Each data-quality rule passes on generated data and fails on a deliberately bad dataset."""

import pytest

from kala_lib import quality


@pytest.fixture
def records(base_set):
    return [e.to_record() for e in base_set]


def test_all_rules_pass_on_generated_data(records):
    for rule in (
        quality.check_difficulty_mix,
        quality.check_type_mix,
        quality.check_law_coverage,
        quality.check_unique_prompts,
        quality.check_structure,
        quality.check_harmful_drafts_non_operational,
    ):
        outcome = rule(records)
        assert outcome.passed, (rule.__name__, outcome.description)


def test_difficulty_mix_fails_when_skewed(records):
    for r in records[:40]:
        r["difficulty"] = "easy" if r["difficulty"] != "easy" else r["difficulty"]
    outcome = quality.check_difficulty_mix(records)
    assert not outcome.passed and "easy" in outcome.description


def test_difficulty_mix_fails_on_unknown_level(records):
    records[0]["difficulty"] = "trivial"
    assert not quality.check_difficulty_mix(records).passed


def test_type_mix_fails_without_multi_turn(records):
    bad = [r for r in records if r["example_type"] != "multi_turn"]
    outcome = quality.check_type_mix(bad)
    assert not outcome.passed and "multi_turn" in outcome.description


def test_law_coverage_fails_when_a_law_only_refuses(records):
    bad = [r for r in records if not (r["law_category"] == 3 and r["expected_behavior"] == "comply")]
    outcome = quality.check_law_coverage(bad)
    assert not outcome.passed and "Law 3" in outcome.description


def test_duplicate_prompts_are_caught_after_normalisation(records):
    records[5]["prompt"] = records[4]["prompt"].upper() + "  !!"
    outcome = quality.check_unique_prompts(records)
    assert not outcome.passed and records[5]["example_id"] in outcome.description


@pytest.mark.parametrize(
    "field, value",
    [("critique", ""), ("principle", "Be kind."), ("response_ethical", ""), ("law_category", 7), ("turns", "[]")],
)
def test_structure_fails_on_incomplete_harmful_example(records, field, value):
    index = next(i for i, r in enumerate(records) if r["example_type"] == "harmful_blocked")
    records[index][field] = value
    if field == "turns":
        records[index]["prompt"] = ""
    outcome = quality.check_structure(records)
    assert not outcome.passed and records[index]["example_id"] in outcome.description


def test_structure_fails_on_missing_column(records):
    del records[3]["response_ethical"]
    assert not quality.check_structure(records).passed


def test_operational_draft_is_flagged(records):
    index = next(i for i, r in enumerate(records) if r["response_harmful"])
    records[index]["response_harmful"] = "Sure. Step 1: mix 20 ml of ..."
    outcome = quality.check_harmful_drafts_non_operational(records)
    assert not outcome.passed and records[index]["example_id"] in outcome.description


def test_empty_table_fails_mix_checks():
    assert not quality.check_difficulty_mix([]).passed
    assert not quality.check_type_mix([]).passed
