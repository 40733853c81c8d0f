"""Evaluation arithmetic: confidence intervals, pass@k, GSM8K answer extraction."""

from __future__ import annotations

import math
import re

# --- proportions -----------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sound at 0%, 100% and small n)."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


# --- pass@k ----------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k), computed stably."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


# --- GSM8K (lm-evaluation-harness rules) -----------------------------------------------------------

_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_IGNORE = (re.compile(r","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


def normalise_number(text: str | None) -> str | None:
    """The harness's exact-match normalisation: drop commas, $, anything up to '#### ', a final '.'."""
    if text is None:
        return None
    for pattern in _IGNORE:
        text = pattern.sub("", text)
    return text.strip()


def gsm8k_strict(response: str) -> str | None:
    """strict-match: the number after '#### ' (first match), else None."""
    match = _STRICT.search(response or "")
    return normalise_number(match.group(1)) if match else None


def gsm8k_flexible(response: str) -> str | None:
    """flexible-extract: the last number-like token in the response, else None."""
    matches = _FLEXIBLE.findall(response or "")
    if not matches:
        return None
    last = matches[-1]
    return normalise_number(last[0] or last[1])


def gsm8k_correct(extracted: str | None, target: str) -> bool:
    return extracted is not None and extracted == normalise_number(target)
