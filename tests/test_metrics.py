import math

import pytest

from kala_lib.metrics import gsm8k_correct, gsm8k_flexible, gsm8k_strict, pass_at_k, wilson_interval


def test_wilson_interval_known_values():
    low, high = wilson_interval(95, 100)
    assert (round(low, 4), round(high, 4)) == (0.8882, 0.9785)  # p=.95, n=100, z=1.96
    assert wilson_interval(0, 10)[0] == 0.0 and 0.277 < wilson_interval(0, 10)[1] < 0.278  # z^2/(n+z^2)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 3, 1, 0.3),                      # pass@1 is the plain success rate
        (10, 3, 10, 1.0),                     # any correct sample among all ten
        (10, 0, 10, 0.0),
        (5, 2, 2, 1 - (3 * 2) / (5 * 4)),     # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (20, 5, 10, 1 - math.comb(15, 10) / math.comb(20, 10)),
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_needs_enough_samples():
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k(5, 1, 10)


@pytest.mark.parametrize(
    "response, strict, flexible",
    [
        ("She pays 3 * 4 = 12 dollars.\n#### 12", "12", "12"),
        ("The total is $1,234.\n#### 1,234", "1234", "1234"),
        ("#### -7", "-7", "-7"),
        ("So the answer is 42.", None, "42"),
        ("First 5 apples, then 7, so 12 apples in all.", None, "12"),
        ("It costs $18.50 in total.", None, "18.50"),
        ("#### 5\nActually wait, it is 6", "5", "6"),
        ("No numbers here.", None, None),
        ("The answer: 3.", None, "3"),
    ],
)
def test_gsm8k_extractors_on_tricky_answers(response, strict, flexible):
    assert gsm8k_strict(response) == strict
    assert gsm8k_flexible(response) == flexible


def test_gsm8k_correct_normalises_the_target():
    assert gsm8k_correct("1234", "#### 1,234")
    assert gsm8k_correct(gsm8k_flexible("It is $5."), "5")
    assert not gsm8k_correct(None, "5")
    assert not gsm8k_correct("50", "5")
