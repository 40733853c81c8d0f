"""The ethics decision as part of the model: decision tokens, their scores, and the shipped dial.

Every assistant target starts with one decision token: ``<|respond|>`` or ``<|refuse_lawN|>``
(N = the Law the refusal names). The model's first response position is then a classifier the
model itself carries:

- ``P(refuse)`` = the summed probability of the five refusal tokens there (reported, and ranked
  for the ROC);
- ``margin`` = best refusal logit - the respond logit: greedy decoding starts a refusal exactly
  when ``margin + bias > 0``, so a threshold ``t`` on the margin is the same thing as a logit bias
  on the decision tokens. The threshold is chosen on the validation split and shipped as
  ``sequence_bias`` in the merged model's ``generation_config.json``. The bias is always
  *negative* (on the refusal tokens when ``t > 0``, on the respond token when ``t < 0``), so it can
  only suppress a decision token, never make one appear later in a response.
- after a refusal token the text is that Law's refusal sentence (``sequence_bias`` entries that
  start with the token: :func:`refusal_text_bias`); after ``<|respond|>`` the model writes freely.

No keyword filter or separate classifier runs at generation time: plain ``generate`` on the
promoted model applies its own generation config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

RESPOND = "<|respond|>"
REFUSE = tuple(f"<|refuse_law{n}|>" for n in range(5))
DECISION_TOKENS = (RESPOND, *REFUSE)


class DecisionError(ValueError):
    """A decision-token problem (missing tokens, bad threshold); the message names the fix."""


def decision_token(behavior: str | None, law: int | None = None) -> str:
    """The token a target starts with: a refusal names its Law, everything else responds."""
    if behavior == "refuse":
        if law is None or not 0 <= int(law) <= 4:
            raise DecisionError(f"a refusal needs its Law (0-4) for its decision token, got {law!r}")
        return REFUSE[int(law)]
    return RESPOND


def token_law(token: str) -> int | None:
    """The Law a refusal token names (None for ``<|respond|>``)."""
    return REFUSE.index(token) if token in REFUSE else None


def add_decision_tokens(tokenizer) -> list[int]:
    """Add the six tokens as special tokens (so ``skip_special_tokens`` hides them); their ids."""
    vocab = tokenizer.get_vocab()  # built anew on every call: once here
    missing = [t for t in DECISION_TOKENS if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return decision_ids(tokenizer)


def decision_ids(tokenizer) -> list[int]:
    """Ids of respond, refuse_law0..4 (respond first); an error naming the fix if they are missing."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in DECISION_TOKENS if t not in vocab]
    if missing:
        raise DecisionError(f"the tokenizer has no decision tokens {missing}: load it with "
                            "kala_lib.models.load_tokenizer(profile, decision_tokens=True) or from the adapter folder")
    return [vocab[t] for t in DECISION_TOKENS]


#: Where the new rows start (TrainConfig.decision_init): the mean of all rows, or a natural opening
#: word's row (respond as the opening of an answer, every refusal as the opening of "I can't").
#: ``split`` unties the output head first: the output rows start as ``words`` (the decision, later
#: fitted: kala_lib.decision_fit), the input rows as the line break that ends the assistant header,
#: so the text after the token starts as a fresh sentence instead of continuing a word.
DECISION_INITS = ("mean", "words", "split")
INIT_WORDS = {RESPOND: "Sure", **{token: "I" for token in REFUSE}}
SPLIT_INPUT_WORD = "\n"


def untie_output_head(model) -> bool:
    """Give a tied output head its own weight (a copy), so decision rows can differ between what
    the model reads and what it predicts; True when it was tied. The config says so, so a saved
    (merged) model loads untied."""
    import torch

    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight is not embeddings.weight:
        return False
    head.weight = torch.nn.Parameter(embeddings.weight.detach().clone(), requires_grad=embeddings.weight.requires_grad)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.tie_word_embeddings = False
    return True


def resize_for_decisions(model, tokenizer, init: str = "mean") -> None:
    """Grow the embedding (and an untied output head) to the tokenizer; the new rows start as
    ``init`` says, deterministically. Loading needs no init: PEFT saves the trained rows' values
    with the adapter and writes them over whatever the rows start as."""
    import torch

    if init not in DECISION_INITS:
        raise DecisionError(f"decision_init must be one of {DECISION_INITS}, got {init!r}")
    embeddings = model.get_input_embeddings()
    old = embeddings.weight.shape[0]
    if old >= len(tokenizer):
        return
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if init == "split":
        untie_output_head(model)
    vocab = tokenizer.get_vocab()

    def first_token(word: str) -> int:
        return tokenizer(word, add_special_tokens=False)["input_ids"][0]

    words = {vocab[t]: first_token(INIT_WORDS[t]) for t in DECISION_TOKENS if vocab[t] >= old}
    newline = {row: first_token(SPLIT_INPUT_WORD) for row in words}
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    with torch.no_grad():
        for layer in {id(m): m for m in (inputs, outputs) if m is not None}.values():
            weight = layer.weight
            weight[old:] = weight[:old].float().mean(dim=0).to(weight.dtype)
            sources = newline if init == "split" and layer is inputs and layer is not outputs else words
            if init in ("words", "split"):
                for row, word in sources.items():
                    weight[row] = weight[word]


# --- scores ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionScore:
    """The model's decision at the first response position of one prompt."""

    margin: float  # best refusal logit - respond logit (> threshold: the model refuses)
    p_refuse: float  # summed refusal-token probability
    law: int  # the refusal token with the highest logit
    decision_is_top: bool  # a decision token is the most likely first token at all (a trained model: always)


def decision_scores(model, tokenizer, prompts: Sequence[str], batch_size: int = 16) -> list[DecisionScore]:
    """One forward pass per prompt (rendered chat prompts ending where the response starts; the
    prefix they share runs once: kala_lib.decision_fit.prompt_states), read by the model's own
    output head at the last position."""
    from kala_lib.decision_fit import prompt_states, scores_from_states

    return scores_from_states(model, tokenizer, prompt_states(model, tokenizer, prompts, batch_size=batch_size)[-1])


# --- the dial: ROC, threshold, bias ---------------------------------------------------------------------


def auc(harmful: Sequence[float], benign: Sequence[float]) -> float | None:
    """Area under the ROC curve (probability a harmful prompt scores above a benign one; ties half)."""
    if not harmful or not benign:
        return None
    ranked = sorted([(s, 1) for s in harmful] + [(s, 0) for s in benign])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid = (i + j + 1) / 2  # 1-based mean rank of the tie block
        rank_sum += mid * sum(label for _, label in ranked[i:j])
        i = j
    n_h, n_b = len(harmful), len(benign)
    return (rank_sum - n_h * (n_h + 1) / 2) / (n_h * n_b)


def rates(harmful: Sequence[float], benign: Sequence[float], threshold: float) -> tuple[float, float]:
    """(refusal on harmful, over-refusal on benign) when the model refuses at margin > threshold."""
    refusal = sum(m > threshold for m in harmful) / max(1, len(harmful))
    over = sum(m > threshold for m in benign) / max(1, len(benign))
    return refusal, over


def roc_points(harmful: Sequence[float], benign: Sequence[float], points: int = 41) -> list[dict[str, float]]:
    """(threshold, refusal, over_refusal) at evenly spaced quantiles of all margins, plus both ends."""
    every = sorted(set(harmful) | set(benign))
    if not every:
        return []
    picks = sorted({every[round(k * (len(every) - 1) / (points - 1))] for k in range(points)})
    thresholds = [picks[0] - 1.0, *picks]
    return [{"threshold": t, **dict(zip(("refusal", "over_refusal"), rates(harmful, benign, t)))} for t in thresholds]


@dataclass(frozen=True)
class Threshold:
    """The chosen point: the lowest margin threshold whose validation over-refusal stays within budget."""

    value: float
    refusal: float
    over_refusal: float
    max_over_refusal: float
    n_harmful: int
    n_benign: int

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.value, "refusal": self.refusal, "over_refusal": self.over_refusal,
                "max_over_refusal": self.max_over_refusal, "n_harmful": self.n_harmful, "n_benign": self.n_benign}


def choose_threshold(harmful: Sequence[float], benign: Sequence[float], max_over_refusal: float = 0.05) -> Threshold:
    """The highest refusal whose over-refusal is <= ``max_over_refusal`` (on the validation split:
    callers pass validation scores only, never the gate's sample)."""
    if not harmful or not benign:
        raise DecisionError(f"choosing a threshold needs harmful and benign validation prompts "
                            f"(got {len(harmful)} and {len(benign)}): rebuild training_mix with the decision corpus")
    if not 0 <= max_over_refusal < 1:
        raise DecisionError(f"max_over_refusal must be in [0, 1), got {max_over_refusal!r}")
    allowed = math.floor(max_over_refusal * len(benign) + 1e-9)  # benign prompts that may score above t
    ranked = sorted(benign, reverse=True)
    value = ranked[allowed] if allowed < len(ranked) else ranked[-1] - 1.0
    refusal, over = rates(harmful, benign, value)
    return Threshold(float(value), refusal, over, max_over_refusal, len(harmful), len(benign))


def sequence_bias(tokenizer, threshold: float) -> list[list]:
    """The generation-config bias that makes greedy decoding refuse exactly when margin > threshold.

    Always a penalty: refusal tokens get ``-threshold`` when the threshold is positive, the respond
    token gets ``threshold`` when it is negative. JSON-serialisable ([[token ids], bias] pairs)."""
    if not math.isfinite(threshold):
        raise DecisionError(f"threshold must be a finite number, got {threshold!r}")
    respond, *refuse = decision_ids(tokenizer)
    if threshold >= 0:
        return [[[token], -float(threshold)] for token in refuse] if threshold > 0 else []
    return [[[respond], float(threshold)]]


def first_token_suppression(tokenizer, vocab_size: int) -> list[int]:
    """Every token id below ``vocab_size`` except the six decision tokens: as the generation config's
    ``begin_suppress_tokens`` it makes every answer open with a decision token, and the dial
    (``sequence_bias``) alone picks which. Without it the dial's penalty can push a refusal token
    below an ordinary first word: on the 2026-12-07 cold run, prompts whose margin cleared the
    threshold opened with "Sure" or "You" instead (the refusal token's biased logit 26-29 against
    28-31), so the text never saw the token it was meant to follow."""
    keep = set(decision_ids(tokenizer))
    if vocab_size < len(tokenizer) or max(keep) >= vocab_size:
        raise DecisionError(f"vocab_size {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens with the "
                            "decision tokens): pass the output head's size (the model's config.vocab_size)")
    return [token for token in range(vocab_size) if token not in keep]


#: The bias on each next word of the refusal sentence after a refusal token: far above any logit
#: (SmolLM2's top logits are 20-40), so greedy and sampled decoding both write the sentence.
REFUSAL_TEXT_BIAS = 100.0


def refusal_sentence(law: int) -> str:
    """What the shipped model says after ``<|refuse_lawN|>``: the generator's first refusal opener
    (``templates.yaml``, the words KALA's training refusals open with) and the token's Law by number
    and name, a refusal the judge counts and that names its Law."""
    from kala_lib.ethics_corpus import templates
    from kala_lib.laws import LawCategory

    return f"{templates()['refusal_openers'][0]} It would go against {LawCategory(law).title}."


def refusal_text_bias(tokenizer) -> list[list]:
    """``sequence_bias`` entries that make the text after each refusal token its
    :func:`refusal_sentence`, then the end of the answer (the tokenizer's EOS, where it has one).

    Why: the 135M model's own text after a refusal token refused 0.85 of validation prompts even
    with its refusal rows tuned, named the Law in none (bench/results/text_follows_token_law64_cpu.log)
    and looped or complied in the rest. Each entry is [refusal token, the sentence's first j tokens]
    with the bias on the j-th (j = 1 .. all, then EOS), so it applies only right after that token: the decision (whether to
    refuse and under which Law) stays the model's own first token; only the words that follow a
    refusal are fixed. Plain ``transformers`` settings, saved in ``generation_config.json``."""
    refuse = decision_ids(tokenizer)[1:]
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    entries = []
    for law, token in enumerate(refuse):
        words = [*tokenizer(refusal_sentence(law), add_special_tokens=False)["input_ids"], *end]
        entries += [[[token, *words[: j + 1]], REFUSAL_TEXT_BIAS] for j in range(len(words))]
    return entries


def decision_generation(model, tokenizer, threshold: float) -> dict[str, Any]:
    """The generation-config fields that ship the decision with the model: the first token is a
    decision token (``begin_suppress_tokens``), greedy decoding refuses exactly when the margin
    is above ``threshold`` (``sequence_bias``'s one-token entries), and a refusal token is followed
    by its Law's refusal sentence (:func:`refusal_text_bias`, the longer entries). All plain
    ``transformers`` settings, saved in ``generation_config.json``."""
    vocab_size = max(model.config.get_text_config().vocab_size, len(tokenizer))
    return {"begin_suppress_tokens": first_token_suppression(tokenizer, vocab_size),
            "sequence_bias": sequence_bias(tokenizer, threshold) + refusal_text_bias(tokenizer)}


def threshold_from_bias(tokenizer, bias: Sequence[Sequence]) -> float:
    """The threshold a shipped ``sequence_bias`` encodes (inverse of :func:`sequence_bias`)."""
    respond, *refuse = decision_ids(tokenizer)
    values = {tuple(tokens)[0]: float(value) for tokens, value in bias if len(tokens) == 1}
    if respond in values:
        return values[respond]
    return -values.get(refuse[0], 0.0)


def decision_agreement(text_refused: Sequence[bool], margins: Sequence[float], threshold: float) -> float | None:
    """Share of prompts where the token decision (margin > threshold) and the judged text agree."""
    if not margins:
        return None
    return sum((m > threshold) == bool(r) for m, r in zip(margins, text_refused)) / len(margins)
