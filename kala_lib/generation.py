"""Batched greedy generation: left padding, KV cache, stop sequences; one path for base, adapter
and merged models (anything with ``generate``).

The token prefix every conversation shares (the system turn and chat header, about half of a gate
prompt's tokens) runs once: its keys and values go to every batch's cache, and each row's own tokens
follow after its left padding ([prefix][padding][row]; the attention mask hides the padding and
positions count only unmasked tokens, so each row sees what it would see alone)."""

from __future__ import annotations

from typing import Callable, Sequence

from kala_lib.chat_format import end_of_turn, render_prompt


def generate(
    model,
    tokenizer,
    conversations: Sequence[list[dict[str, str]]],
    prompt_format: str,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    stop: Sequence[str] = ("<|im_end|>", "### User:", "### System:"),
    temperature: float = 0.0,
    seed: int = 0,
    settled: Callable[[int, str], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    share_prefix: bool = True,
    min_shared_prefix: int = 16,
    prefill: str = "",
) -> list[str]:
    """Greedy (temperature 0) or sampled (temperature > 0, top-p 0.95, seeded) continuations.

    ``settled(i, text)``: conversation ``i`` stops generating once it returns True for its text so
    far (the ethics evaluation stops a response as soon as its score cannot change); the batch
    ends when every row has stopped. ``progress(done, total)`` is called after each batch.
    ``share_prefix``: run the prefix all conversations share once (at least ``min_shared_prefix``
    tokens; module docstring). ``prefill``: text put after every rendered prompt, as the start of
    the answer (e.g. a decision token, to read the text the model writes after it).
    """
    import torch

    from kala_lib.decision_fit import common_prefix_length

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    prompts = [render_prompt(tokenizer, list(c), prompt_format) + prefill for c in conversations]
    stop_ids = {tokenizer.eos_token_id}
    end = end_of_turn(tokenizer, prompt_format)
    if end:
        stop_ids.add(tokenizer.convert_tokens_to_ids(end))
    stop_ids.discard(None)
    device = next(model.parameters()).device
    # Longest first: batches of similar length waste less on padding.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    if temperature > 0:
        torch.manual_seed(seed)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    shared = common_prefix_length(encoded) if share_prefix and len(prompts) > 1 else 0
    shared = min(shared, min(map(len, encoded)) - 1) if shared >= min_shared_prefix else 0  # each row keeps a token
    try:
        with torch.no_grad():
            prefix = _prefix_cache(model, encoded[0][:shared], device) if shared else None
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = _left_padded([encoded[i] for i in idx], shared, tokenizer.pad_token_id, device)
                extra = {"cache": _expanded(prefix, len(idx), model)} if prefix is not None else {}
                criteria = _settled_criteria(tokenizer, enc["input_ids"].shape[1], idx, settled) if settled else None
                generated = model.generate(
                    **enc,
                    **extra,
                    max_new_tokens=max_new_tokens,
                    **({"stopping_criteria": criteria} if criteria else {}),
                    do_sample=temperature > 0,
                    num_beams=1,
                    **({"temperature": temperature, "top_p": 0.95, "top_k": 0} if temperature > 0 else {}),
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=sorted(stop_ids),
                    use_cache=True,
                )
                new = generated[:, enc["input_ids"].shape[1]:]
                for i, row in zip(idx, new):
                    text = tokenizer.decode(row, skip_special_tokens=True)
                    for marker in stop:
                        text = text.split(marker)[0]
                    outputs[i] = text.strip()
                if progress:
                    progress(min(start + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
    return outputs


def _left_padded(rows: Sequence[list[int]], shared: int, pad_id: int, device) -> dict:
    """input_ids and attention_mask: [shared prefix][left padding][row's own tokens] per row."""
    import torch

    width = max(len(r) - shared for r in rows)
    input_ids = torch.full((len(rows), shared + width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        own = row[shared:]
        input_ids[i, :shared] = torch.tensor(row[:shared], dtype=torch.long)
        input_ids[i, shared + width - len(own):] = torch.tensor(own, dtype=torch.long)
        attention[i, :shared] = 1
        attention[i, shared + width - len(own):] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}


def _decoder(model):
    """The transformer stack under a causal LM (PEFT-wrapped or not): what computes keys and values."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix)


def _prefix_cache(model, prefix_ids: list[int], device) -> list:
    """Per layer (key, value) of the shared prefix, batch 1."""
    import torch

    cache = _decoder(model)(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True).past_key_values
    return [(layer.keys, layer.values) for layer in cache.layers]


def _expanded(prefix: list, rows: int, model):
    """A fresh cache holding the prefix for ``rows`` rows (generation appends to it; the prefix stays)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(rows, *k.shape[1:]).contiguous(), v.expand(rows, *v.shape[1:]).contiguous())
                                        for k, v in prefix], config=_decoder(model).config)


def _settled_criteria(tokenizer, prompt_length: int, rows: Sequence[int], settled: Callable[[int, str], bool]):
    """A per-row stopping criterion: True for rows (conversation indices ``rows``) whose text so far is settled."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Settled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            return torch.tensor([settled(i, t) for i, t in zip(rows, texts)], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Settled()])
