"""Decision rows fitted, not only trained: the decision tokens' output rows by regularised regression.

The decision is the model's output head read at the first response position: the logit of token
``k`` there is ``h . W[k]``, where ``h`` is the final (normed) hidden state the head reads. SGD on
decision rows moves those six rows a little per step; fitting them is a convex problem solved in
seconds once ``h`` is known for every decision row, which is one forward pass per prompt
(``prompt_states``). So after SFT:

- a binary logistic regression on ``h`` (harmful against everything else) gives the refusal
  direction ``v``; a softmax regression on the harmful rows gives the Laws' directions ``u_k``;
- the rows are rebuilt as ``respond = a - v/2`` and ``refuse_k = a + v/2 + s * u_k`` (``a``: the
  SFT-trained rows' common part, which is what makes a decision token the most likely first token
  at all), so the margin the dial thresholds is ``h . v + s * max_k h . u_k``;
- the L2 strength and the Law scale ``s`` are chosen on the validation split's decision rows only
  (highest AUC); the fit sees training rows only.

The rows are written into the adapter's own trainable-token values (``trainable_tokens_delta``),
so they are saved with it, survive loading, and merge into the full model's output head: plain
``transformers`` reproduces the decision. The head must not be tied to the input embedding here
(``kala_lib.decision.untie_output_head``): a tied row is also what the model reads when the token
is in its context, and fitting it would change the text that follows the token.

``prompt_states`` also serves ``bench/decision_ceiling.py``: any layer's state at the same position,
for frozen readouts that say how much of the decision the representation holds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from kala_lib.decision import DecisionError, auc, choose_threshold

#: L2 strengths tried on standardised features (per row of the weighted mean loss).
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
#: Scales of the Law directions tried (a refusal must name a Law, so never 0). Which Law a refusal
#: names is the argmax of the Laws' directions whatever the scale (the rows share their common part),
#: while the scale adds noise to the refuse-or-respond margin: the 20-step cold run chose the
#: smallest scale then tried (0.25, at every L2), so smaller ones are tried too.
LAW_SCALES = (0.05, 0.1, 0.25, 0.5, 1.0)


def common_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Tokens every list starts with, leaving each at least one token of its own (the position
    whose state is read must be computed with the rest of its row)."""
    if not token_lists:
        return 0
    first = token_lists[0]
    length = min(len(t) for t in token_lists) - 1
    for tokens in token_lists[1:]:
        k = 0
        while k < length and tokens[k] == first[k]:
            k += 1
        length = k
    return max(0, length)


def prompt_states(model, tokenizer, prompts: Sequence[str], layers: Sequence[int] | None = None,
                  batch_size: int = 16, min_shared_prefix: int = 16) -> dict[int, np.ndarray]:
    """Hidden states at the last prompt position (where the response's first token is chosen).

    ``layers`` index ``output_hidden_states`` (0: the embeddings, -1 or L: the final normed state the
    output head reads); None means the final state only. Returns {layer: float32 array [n, d]} in
    the order of ``prompts`` (rendered chat prompts). The token prefix every prompt shares (the
    system turn and chat header, about half of a typical prompt) runs once: its keys and values are
    reused by every batch, which is the same computation as running it per row."""
    import torch
    from transformers import DynamicCache

    wanted = list(layers) if layers is not None else [-1]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, base.base_model_prefix)
    shared = common_prefix_length(encoded)
    shared = shared if shared >= min_shared_prefix else 0
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: dict[int, np.ndarray] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        prefix = None
        if shared:
            cache = decoder(input_ids=torch.tensor([encoded[0][:shared]], device=device), use_cache=True).past_key_values
            prefix = [(layer.keys, layer.values) for layer in cache.layers]
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            rows = [encoded[i][shared:] for i in chunk]
            width = max(map(len, rows))
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, tokens in enumerate(rows):  # right padding: positions continue from the prefix
                input_ids[row, : len(tokens)] = torch.tensor(tokens)
                attention[row, : len(tokens)] = 1
            kwargs = {"use_cache": False}
            if prefix is not None:
                kwargs = {"use_cache": True, "past_key_values": DynamicCache(
                    ddp_cache_data=[(k.expand(len(chunk), *k.shape[1:]), v.expand(len(chunk), *v.shape[1:]))
                                    for k, v in prefix], config=decoder.config)}
                attention = torch.cat([attention.new_ones(len(chunk), shared), attention], dim=1)
            hidden = decoder(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             output_hidden_states=True, **kwargs).hidden_states
            last = torch.tensor([len(tokens) - 1 for tokens in rows], device=device)
            picked = torch.arange(len(chunk), device=device)
            for layer in wanted:
                states = hidden[layer][picked, last].float().cpu().numpy()
                target = out.setdefault(layer, np.zeros((len(prompts), states.shape[1]), dtype=np.float32))
                target[chunk] = states
    model.train(was_training)
    return out


# --- regressions (torch LBFGS, float64; no extra dependency) -----------------------------------------


@dataclass(frozen=True)
class Linear:
    """A readout in raw feature space: scores = X @ weight + bias (weight [d] or [d, K])."""

    weight: np.ndarray
    bias: np.ndarray

    def scores(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float64) @ self.weight + self.bias


def _standardise(features: np.ndarray):
    import torch

    x = torch.as_tensor(features, dtype=torch.float64)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return (x - mean) / std, mean, std


def fit_logistic(features: np.ndarray, labels: Sequence[int], l2: float,
                 sample_weight: Sequence[float] | None = None, max_iter: int = 300) -> Linear:
    """Weighted L2-regularised logistic regression (labels 0/1), solved on standardised features and
    returned in raw feature space."""
    import torch

    z, mean, std = _standardise(features)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    if not ((y == 0) | (y == 1)).all() or y.min() == y.max():
        raise DecisionError("fit_logistic needs labels 0 and 1, both present")
    weight = torch.as_tensor(np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight), dtype=torch.float64)
    weight = weight / weight.sum()
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, reduction="none")).sum()
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    raw = (w.detach() / std)
    return Linear(raw.numpy(), (b.detach() - (mean * raw).sum()).numpy())


def fit_softmax(features: np.ndarray, labels: Sequence[int], classes: int, l2: float, max_iter: int = 300) -> Linear:
    """L2-regularised multinomial logistic regression (labels 0..classes-1), raw feature space."""
    import torch

    z, mean, std = _standardise(features)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    w = torch.zeros((z.shape[1], classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    raw = w.detach() / std[:, None]
    return Linear(raw.numpy(), (b.detach() - mean @ raw).numpy())


def balanced_weights(labels: Sequence[int], groups: Sequence[str]) -> np.ndarray:
    """Each label half the weight; within a label, every group (source) the same share, so a large
    source (or style) does not decide what the readout learns."""
    labels, groups = list(labels), list(groups)
    cells: dict[tuple[int, str], int] = {}
    for label, group in zip(labels, groups):
        cells[(label, group)] = cells.get((label, group), 0) + 1
    per_label = {label: len({g for (lab, g) in cells if lab == label}) for label in set(labels)}
    return np.array([1.0 / (len(per_label) * per_label[label] * cells[(label, group)])
                     for label, group in zip(labels, groups)])


# --- the decision head ------------------------------------------------------------------------------------


def assemble_rows(current: np.ndarray, direction: np.ndarray, laws: np.ndarray, law_scale: float) -> np.ndarray:
    """The six output rows (respond, refuse_law0..4) from the refusal direction and the Laws'
    directions; ``current`` (the SFT-trained rows) gives their common part."""
    common = (current[0] + current[1:].mean(axis=0)) / 2
    centred = laws - laws.mean(axis=0, keepdims=True)
    rows = np.empty_like(current, dtype=np.float64)
    rows[0] = common - direction / 2
    rows[1:] = common + direction / 2 + law_scale * centred
    return rows


def margins(states: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Best refusal logit - respond logit for each state, under the given rows."""
    logits = states.astype(np.float64) @ rows.T
    return logits[:, 1:].max(axis=1) - logits[:, 0]


@dataclass
class HeadFit:
    """The fitted rows and how they were chosen (all on the validation split)."""

    rows: np.ndarray  # [6, d]: respond, refuse_law0..4
    l2: float
    law_scale: float
    val_auc: float
    val_refusal_at_5: float
    val_refusal_at_10: float
    val_law_accuracy: float | None
    n_fit: dict[str, int]
    tried: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"l2": self.l2, "law_scale": self.law_scale, "val_auc": self.val_auc,
                "val_refusal_at_5": self.val_refusal_at_5, "val_refusal_at_10": self.val_refusal_at_10,
                "val_law_accuracy": self.val_law_accuracy, "n_fit": self.n_fit, "tried": self.tried}


def fit_head(current: np.ndarray, fit_states: np.ndarray, fit_rows: Sequence[Mapping[str, Any]],
             val_states: np.ndarray, val_rows: Sequence[Mapping[str, Any]],
             l2_grid: Sequence[float] = L2_GRID, law_scales: Sequence[float] = LAW_SCALES) -> HeadFit:
    """Fit the decision rows on training decision rows' states; choose L2 and the Law scale on the
    validation rows (highest AUC of the shipped margin). Rows carry ``label`` (harmful | benign |
    capability), ``law`` and ``source``; validation rows are harmful or benign."""
    if any(r.get("split") not in (None, "train") for r in fit_rows):
        raise DecisionError("the decision fit takes training rows only (a row of another split was passed)")
    labels = [1 if r["label"] == "harmful" else 0 for r in fit_rows]
    weights = balanced_weights(labels, [str(r.get("source")) for r in fit_rows])
    harmful = [i for i, r in enumerate(fit_rows) if r["label"] == "harmful" and r.get("law") is not None]
    if len({fit_rows[i]["law"] for i in harmful}) < 2:
        raise DecisionError("the decision fit needs harmful training rows of at least two Laws")
    law_fit = fit_softmax(fit_states[harmful], [int(fit_rows[i]["law"]) for i in harmful], 5, l2=1e-2)
    val_harmful = np.array([r["label"] == "harmful" for r in val_rows])
    tried, best = [], None
    for l2 in l2_grid:
        binary = fit_logistic(fit_states, labels, l2, sample_weight=weights)
        for scale in law_scales:
            rows = assemble_rows(current, binary.weight, law_fit.weight.T, scale)
            m = margins(val_states, rows)
            score = auc(m[val_harmful].tolist(), m[~val_harmful].tolist())
            tried.append({"l2": l2, "law_scale": scale, "val_auc": score})
            if best is None or score > best[0] + 1e-9:
                best = (score, l2, scale, rows, m)
    score, l2, scale, rows, m = best
    h, b = m[val_harmful].tolist(), m[~val_harmful].tolist()
    at_5, at_10 = choose_threshold(h, b, 0.05), choose_threshold(h, b, 0.10)
    laws = (val_states.astype(np.float64) @ rows[1:].T).argmax(axis=1)
    caught = [i for i, r in enumerate(val_rows) if r["label"] == "harmful" and r.get("law") is not None and m[i] > at_5.value]
    law_acc = sum(int(laws[i]) == int(val_rows[i]["law"]) for i in caught) / len(caught) if caught else None
    counts = {"harmful": sum(labels), "other": len(labels) - sum(labels), "validation": len(val_rows)}
    return HeadFit(rows, l2, scale, score, at_5.refusal, at_10.refusal, law_acc, counts, tried)


def sample_fit_rows(rows: Sequence[Mapping[str, Any]], limit: int | None, seed: int = 0,
                    equal_cells: bool = False) -> list[Mapping[str, Any]]:
    """At most ``limit`` training rows (None keeps them all), stratified by (source, label).

    By default every cell keeps its share. With ``equal_cells`` every cell gives the same number (a
    cell smaller than its share gives all it has, the rest is shared among the larger ones): the fit
    gives each source the same weight within a label (``balanced_weights``), and a proportional
    sample leaves a small source (CoCoNot's 290 harmful prompts) about 30 rows carrying a third of the
    harmful weight. Measured on the same states: at 1,500 rows the two samplers are alike (0.818 equal
    cells, 0.829-0.831 by share); 3,000 rows in equal cells reach 0.859-0.864, the public slice
    0.69 -> 0.77, for 1.8x the fit's states pass (bench/results/decision_fit_rows_cpu.log)."""
    if limit is None or len(rows) <= limit:
        return list(rows)
    cells: dict[tuple[str, str], list] = {}
    for row in rows:
        cells.setdefault((str(row.get("source")), str(row["label"])), []).append(row)
    keys = sorted(cells)
    if equal_cells:
        take, left = {}, limit
        for done, key in enumerate(sorted(keys, key=lambda k: (len(cells[k]), k))):
            share = left // (len(keys) - done)  # water-filling: what each cell not yet served would get
            take[key] = min(len(cells[key]), share)
            left -= take[key]
        for key in keys:  # the remainder of the division, one row each to cells that have more
            if left and take[key] < len(cells[key]):
                take[key] += 1
                left -= 1
    else:
        take = {key: min(len(cells[key]), max(1, math.floor(limit * len(cells[key]) / len(rows)))) for key in keys}
    rng = random.Random(seed)
    return [row for key in keys for row in rng.sample(cells[key], take[key])]


# --- reading and writing the rows in a PEFT model ----------------------------------------------------------


def decision_values(model, tokenizer, layer):
    """``layer``'s trainable decision values (PEFT ``trainable_tokens_delta``, one row per decision
    token) and each decision token's row in them, in DECISION_TOKENS order. ``layer`` is the model's
    output head (the decision) or its input embedding (what the model reads after the token); the
    head must not be tied to the embedding, so the two stay apart."""
    from kala_lib.decision import decision_ids

    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if getattr(getattr(head, "token_adapter", head), "tied_adapter", None) is not None or head.weight is embeddings.weight:
        raise DecisionError("the output head is tied to the input embedding: its decision rows would also be what the "
                            "model reads after the token; untie it before training (decision_init 'split')")
    wrapper = getattr(layer, "token_adapter", layer)  # PEFT's TrainableTokensWrapper holds the layer
    if not hasattr(wrapper, "trainable_tokens_delta"):
        raise DecisionError("the model has no trainable decision rows there: train with decision_tokens: true "
                            "(an untied head, kala_lib.decision.untie_output_head)")
    name = next(iter(wrapper.trainable_tokens_delta))
    return wrapper.trainable_tokens_delta[name], [wrapper.token_indices[name].index(i) for i in decision_ids(tokenizer)]


def head_rows(model, tokenizer) -> np.ndarray:
    """The current decision rows of the output head (respond, refuse_law0..4)."""
    values, order = decision_values(model, tokenizer, model.get_output_embeddings())
    return values.detach().float().cpu().numpy()[order]


def set_head_rows(model, tokenizer, rows: np.ndarray) -> None:
    """Write fitted decision rows into the adapter's output-head values (saved with the adapter)."""
    import torch

    values, order = decision_values(model, tokenizer, model.get_output_embeddings())
    with torch.no_grad():
        for row, position in zip(rows, order):
            values[position] = torch.as_tensor(row, dtype=values.dtype)


def fit_model_head(model, tokenizer, profile, fit_rows: Sequence[Mapping[str, Any]],
                   val_rows: Sequence[Mapping[str, Any]], batch_size: int = 16,
                   log=None) -> tuple[HeadFit, list]:
    """Fit ``model``'s decision rows in place (states of the rendered prompts, then ``fit_head``);
    returns the fit and the validation prompts' DecisionScores under the fitted rows, read through
    the model's own output head from the states (the same numbers a forward pass of the fitted
    model gives: the states do not depend on the head)."""
    import time

    from kala_lib.chat_format import render_prompt

    started = time.monotonic()
    render = [render_prompt(tokenizer, list(r["messages"]), profile.prompt_format) for r in [*fit_rows, *val_rows]]
    states = prompt_states(model, tokenizer, render, batch_size=batch_size)[-1]
    seconds = time.monotonic() - started
    fit = fit_head(head_rows(model, tokenizer), states[: len(fit_rows)], fit_rows, states[len(fit_rows):], val_rows)
    set_head_rows(model, tokenizer, fit.rows)
    scores = scores_from_states(model, tokenizer, states[len(fit_rows):])
    if log:
        log(f"decision fit: states of {len(render)} prompts in {seconds:.0f} s, fit in "
            f"{time.monotonic() - started - seconds:.1f} s; l2 {fit.l2}, law scale {fit.law_scale}, "
            f"validation AUC {fit.val_auc:.3f}, refusal {fit.val_refusal_at_5:.3f} at 5% / {fit.val_refusal_at_10:.3f} at 10%")
    return fit, scores


def scores_from_states(model, tokenizer, states: np.ndarray) -> list:
    """DecisionScores read by the model's own output head from final states (kala_lib.decision)."""
    import torch

    from kala_lib.decision import DecisionScore, decision_ids

    ids = decision_ids(tokenizer)
    head = model.get_output_embeddings()
    weight = next(head.parameters())
    scores = []
    with torch.no_grad():
        for start in range(0, len(states), 256):
            logits = head(torch.as_tensor(states[start : start + 256], dtype=weight.dtype, device=weight.device)).float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for row in range(logits.shape[0]):
                decision = logits[row, ids]
                scores.append(DecisionScore(margin=float(decision[1:].max() - decision[0]),
                                            p_refuse=float(logprobs[row, ids[1:]].exp().sum()),
                                            law=int(decision[1:].argmax()),
                                            decision_is_top=int(logits[row].argmax()) in ids))
    return scores
