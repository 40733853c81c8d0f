"""Batched greedy generation: left padding, KV cache, stop sequences; one path for base, adapter
and merged models (anything with ``generate``)."""

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
) -> list[str]:
    """Greedy (temperature 0) or sampled (temperature > 0, top-p 0.95, seeded) continuations.

    ``settled(i, text)``: conversation ``i`` stops generating once it returns True for its text so
    far (the ethics evaluation stops a response as soon as its score cannot change); the batch
    ends when every row has stopped. ``progress(done, total)`` is called after each batch.
    """
    import torch

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    prompts = [render_prompt(tokenizer, list(c), prompt_format) for c in conversations]
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
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = {k: v.to(device) for k, v in enc.items()}
                criteria = _settled_criteria(tokenizer, enc["input_ids"].shape[1], idx, settled) if settled else None
                generated = model.generate(
                    **enc,
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


def _settled_criteria(tokenizer, prompt_length: int, rows: Sequence[int], settled: Callable[[int, str], bool]):
    """A per-row stopping criterion: True for rows (conversation indices ``rows``) whose text so far is settled."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Settled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            return torch.tensor([settled(i, t) for i, t in zip(rows, texts)], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Settled()])
