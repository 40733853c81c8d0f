"""The text follows the token: the refusal tokens' input rows tuned after SFT.

A decision token is both an output row (what the model predicts first: fitted in
``kala_lib.decision_fit``) and an input row (what the model reads before writing the visible text).
The input rows start as the assistant header's line break (``decision_init: split``), so the text
after them starts a sentence; but a short SFT run barely moves them (after 20 CPU steps the six rows
still had cosine 0.994-0.999 to one another), so the text after ``<|refuse_lawN|>`` was the same
as after ``<|respond|>``: a forced refusal token was followed by a refusal on 0 of 60 validation
prompts (bench/text_follows_token.py).

Here only the five refusal rows are optimised (Adam, everything else frozen), on the SFT
training split's refusals: the prompt and its refusal token, the loss on the first ``target_tokens``
tokens of the refusal text, where the refusal (and, in KALA's refusals, the Law) is said. Those are
the adapter's own embedding values (PEFT ``trainable_tokens_delta``), saved, loaded and merged with
it. ``<|respond|>``'s row is left as it is, so after it the model writes what it would anyway. The
rows are read only after the token, so the decision itself (the output rows, the states at the last
prompt position) is unchanged.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Sequence

from kala_lib.decision import REFUSE, DecisionError
from kala_lib.decision_fit import decision_values


@dataclass(frozen=True)
class FollowResult:
    """What the tuning did (recorded in decision_fit.json)."""

    steps: int
    examples: int
    first_loss: float
    last_loss: float
    seconds: float

    def summary(self) -> dict:
        return {"steps": self.steps, "examples": self.examples, "first_loss": round(self.first_loss, 4),
                "last_loss": round(self.last_loss, 4), "seconds": round(self.seconds, 1)}


def refusal_examples(tokenizer, rows: Sequence[dict], prompt_format: str, target_tokens: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of each training row whose answer starts with a refusal token: the prompt,
    the token (read, not a target: the output rows are fitted apart), then the first
    ``target_tokens`` tokens of the refusal text as targets."""
    from kala_lib.training import encode_example

    if target_tokens < 1:
        raise DecisionError(f"target_tokens must be >= 1, got {target_tokens}")
    refuse_ids = set(tokenizer.convert_tokens_to_ids(list(REFUSE)))
    examples = []
    for row in rows:
        messages = row["messages"] if isinstance(row, dict) else row
        if not messages or messages[-1]["role"] != "assistant":
            continue
        if not messages[-1]["content"].startswith(REFUSE):
            continue
        ids, labels = encode_example(tokenizer, messages, prompt_format, max_len=1_000_000)
        first = next(i for i, label in enumerate(labels) if label != -100)
        if ids[first] not in refuse_ids:
            raise DecisionError(f"a refusal's first target is not its refusal token ({tokenizer.decode(ids[first])!r}): "
                                "load the tokenizer with decision tokens (kala_lib.models.load_tokenizer(..., decision_tokens=True))")
        labels = [*labels[:first], -100, *labels[first + 1 : first + 1 + target_tokens]]
        examples.append((ids[: len(labels)], labels))
    return examples


def input_rows(model, tokenizer):
    """The six input rows (respond, refuse_law0..4) as a float numpy array, for checks."""
    values, order = decision_values(model, tokenizer, model.get_input_embeddings())
    return values.detach().float().cpu().numpy()[order]


def tune_refusal_rows(model, tokenizer, loss_module, examples: Sequence[tuple[list[int], list[int]]], steps: int,
                      learning_rate: float, batch_size: int, seed: int = 0, log=None) -> FollowResult:
    """Adam on the five refusal input rows only, ``steps`` batches of ``batch_size`` examples drawn
    round-robin over the Laws; every other parameter keeps its value and its requires_grad. The
    system turn every example shares runs once (no gradient reaches it: it precedes the token).
    ``loss_module``: kala_lib.training's TargetLoss around ``model`` (its mixed precision too)."""
    import torch

    from kala_lib.training import collate, shared_prefix_length

    if steps < 1 or batch_size < 1 or not learning_rate > 0:
        raise DecisionError(f"steps, batch_size and learning_rate must be positive, got {steps}, {batch_size}, {learning_rate}")
    if not examples:
        raise DecisionError("no refusal examples to tune the refusal rows on: the training split has no answer that "
                            "starts with a refusal token (build the mix with decision_tokens: true)")
    delta, order = decision_values(model, tokenizer, model.get_input_embeddings())
    refuse_positions = order[1:]  # DECISION_TOKENS order: respond first
    vocab = tokenizer.get_vocab()
    by_token: dict[int, list[int]] = {}
    for i, (ids, labels) in enumerate(examples):
        first = next(j for j, label in enumerate(labels) if label != -100) - 1
        by_token.setdefault(ids[first], []).append(i)
    groups = [by_token[vocab[t]] for t in REFUSE if vocab[t] in by_token]
    rng = random.Random(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    shared = shared_prefix_length(examples)
    device = delta.device
    frozen = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    started, losses = time.monotonic(), []
    try:
        for p in frozen:
            p.requires_grad_(False)
        delta.requires_grad_(True)
        model.eval()  # no dropout: the rows are tuned for the model as it generates
        keep = torch.ones(delta.shape[0], 1, dtype=delta.dtype, device=device)
        keep[refuse_positions] = 0  # rows that must not move (respond)
        before = delta.detach().clone()
        optimizer = torch.optim.Adam([delta], lr=learning_rate)
        prefix = None
        if shared:
            with torch.no_grad():
                prefix = loss_module.prefix_kv(torch.tensor([examples[0][0][:shared]], device=device))
        for step in range(steps):
            batch = [examples[rng.choice(groups[(step * batch_size + k) % len(groups)])] for k in range(batch_size)]
            input_ids, labels, attention = collate([(ids[shared:], labs[shared:]) for ids, labs in batch], pad)
            optimizer.zero_grad(set_to_none=True)
            loss, count = loss_module(input_ids.to(device), labels.to(device), attention.to(device), prefix=prefix)
            (loss / count).backward()
            optimizer.step()
            with torch.no_grad():
                delta.copy_(keep * before + (1 - keep) * delta)
            losses.append(loss.item() / count)
            if log and (step % 10 == 0 or step == steps - 1):
                log(f"refusal rows: step {step + 1}/{steps}, loss {losses[-1]:.3f}")
    finally:
        delta.requires_grad_(False)
        for p, flag in frozen.items():
            p.requires_grad_(flag)
        model.train(was_training)
    head = min(5, len(losses))
    return FollowResult(steps, len(examples), sum(losses[:head]) / head, sum(losses[-head:]) / head,
                        time.monotonic() - started)
