"""Batched greedy generation: left padding, KV cache, stop sequences; one path for base, adapter
and merged models (anything with ``generate``)."""

from __future__ import annotations

from typing import Sequence

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
) -> list[str]:
    """Greedy (temperature 0) or sampled (temperature > 0, top-p 0.95, seeded) continuations."""
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
                generated = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
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
    finally:
        model.train(was_training)
    return outputs
