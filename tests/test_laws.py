import pytest

from kala_lib.laws import DECISION_ORDER, LAWS, SYSTEM_PROMPT, LawCategory, winning_law


def test_decision_order_is_law_0_to_4():
    assert [int(law) for law in DECISION_ORDER] == [0, 1, 2, 3, 4]
    assert set(LAWS) == set(DECISION_ORDER)


@pytest.mark.parametrize(
    "laws, winner",
    [((2, 0), 0), ((4, 1), 1), ((3, 2), 2), ((4, 3), 3), ((4,), 4), ((3, 1, 2), 1)],
)
def test_winning_law_follows_decision_order(laws, winner):
    assert winning_law(*laws) is LawCategory(winner)


@pytest.mark.parametrize("value, law", [(2, 2), ("3", 3), ("LAW_1", 1), ("law_4", 4), ("Law 0", 0)])
def test_parse_accepts_common_spellings(value, law):
    assert LawCategory.parse(value) is LawCategory(law)


@pytest.mark.parametrize("value", [5, -1, "Law 7", "safety", None])
def test_unknown_law_is_a_clear_error(value):
    with pytest.raises(ValueError, match="unknown law"):
        LawCategory.parse(value)


def test_system_prompt_lists_every_law_in_priority_order():
    positions = [SYSTEM_PROMPT.index(LAWS[law].title) for law in DECISION_ORDER]
    assert positions == sorted(positions)
