"""Generation with the shared prefix run once, and the trainer's mixed precision."""

from __future__ import annotations

import pytest
import torch

from kala_lib import generation
from kala_lib.models import get_profile, load_model, load_tokenizer

SYSTEM = "You are KALA. Follow the five Laws, in order, always. Refuse harm; help with everything else."
QUESTIONS = ("How do I bake bread?", "Write a poem about the sea and the wind over it", "hi",
             "Explain DNS " * 12, "How can I kill a Python process that hangs?")


def conversations(system: str = SYSTEM):
    return [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in QUESTIONS]


@pytest.mark.parametrize("profile_name", ["tiny-gpt-neox", "smollm2-135m"])
def test_the_shared_prefix_run_once_generates_what_each_row_alone_generates(profile_name):
    profile = get_profile(profile_name)
    tokenizer = load_tokenizer(profile)
    model = load_model(profile).eval()
    shared = generation.generate(model, tokenizer, conversations(), profile.prompt_format, max_new_tokens=12, batch_size=3)
    whole = generation.generate(model, tokenizer, conversations(), profile.prompt_format, max_new_tokens=12,
                                batch_size=3, share_prefix=False)
    alone = [generation.generate(model, tokenizer, [c], profile.prompt_format, max_new_tokens=12)[0]
             for c in conversations()]
    assert shared == whole == alone
    assert any(shared)  # something was generated (an all-empty output would agree trivially)


def test_rows_layout_puts_the_padding_between_the_prefix_and_each_row():
    enc = generation._left_padded([[1, 2, 3, 4, 5], [1, 2, 3, 9]], shared=3, pad_id=0, device="cpu")
    assert enc["input_ids"].tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 0, 9]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 1]]


def test_a_prefix_as_long_as_a_whole_prompt_leaves_that_row_a_token():
    """When one conversation is the shared prefix itself, the prefix stops a token short."""
    profile = get_profile("tiny-gpt-neox")
    tokenizer = load_tokenizer(profile)
    model = load_model(profile).eval()
    same = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello there"}]] * 3
    out = generation.generate(model, tokenizer, same, profile.prompt_format, max_new_tokens=6, batch_size=2)
    assert out == generation.generate(model, tokenizer, same, profile.prompt_format, max_new_tokens=6,
                                      batch_size=2, share_prefix=False)


def test_prefill_starts_every_answer_with_the_given_text():
    """The answer is generated after the prefill, exactly as if the prompt had ended with it."""
    from kala_lib.chat_format import render_prompt

    profile = get_profile("tiny-gpt-neox")
    tokenizer = load_tokenizer(profile)
    model = load_model(profile).eval()
    prefilled = generation.generate(model, tokenizer, conversations()[:2], profile.prompt_format, max_new_tokens=6,
                                    prefill="Sure, here")
    plain = generation.generate(model, tokenizer, conversations()[:2], profile.prompt_format, max_new_tokens=6)
    for conversation, text in zip(conversations()[:2], prefilled):
        ids = tokenizer(render_prompt(tokenizer, conversation, profile.prompt_format) + "Sure, here",
                        add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
        assert text == tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip() or \
            tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).startswith(text)
    assert prefilled != plain


# --- mixed precision ---------------------------------------------------------------------------------

EPYC = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
OLD = "processor\t: 0\nflags\t\t: fpu avx2 avx512f\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_auto_mixed_precision_is_bf16_only_on_a_float32_cpu_model_with_native_bf16():
    from kala_lib.training import cpu_has_native_bf16, resolve_mixed_precision

    assert cpu_has_native_bf16(EPYC) and cpu_has_native_bf16(ARM) and not cpu_has_native_bf16(OLD)
    assert resolve_mixed_precision("auto", "cpu", "float32", False, EPYC) == "bf16"
    assert resolve_mixed_precision("auto", "cpu", "float32", False, OLD) == "no"  # emulated bf16 is slower
    assert resolve_mixed_precision("auto", "gpu", "float16", False, EPYC) == "no"  # the profile's dtype rules
    assert resolve_mixed_precision("auto", "cpu", "float32", True, EPYC) == "no"
    assert resolve_mixed_precision("bf16", "cpu", "float32", False, OLD) == "bf16"
    assert resolve_mixed_precision("no", "cpu", "float32", False, EPYC) == "no"


def test_an_unknown_mixed_precision_is_refused_with_the_choices(tmp_path):
    from kala_lib.training import TrainConfig, TrainingError

    with pytest.raises(TrainingError, match="mixed_precision must be one of"):
        TrainConfig(output_dir=str(tmp_path), train_file="x", mixed_precision="fp8").validate(data_files=False)


def test_bf16_training_computes_in_bf16_and_keeps_float32_weights_and_gradients():
    """Under the loss module's autocast the LoRA path is PEFT's (the fused one is float32 only), the
    loss is close to float32's, and the trainable weights and their gradients stay float32."""
    from peft import LoraConfig, get_peft_model

    from kala_lib.cpu_lora import use_fast_lora_dropout, use_fused_lora
    from kala_lib.training import target_loss_module

    profile = get_profile("tiny-gpt-neox")
    torch.manual_seed(0)
    model = get_peft_model(load_model(profile), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                           target_modules=list(profile.target_modules)))
    use_fast_lora_dropout(model)
    assert use_fused_lora(model) > 0
    for _, lora_b in ((n, p) for n, p in model.named_parameters() if "lora_B" in n):
        torch.nn.init.normal_(lora_b, std=0.02)  # a non-zero adapter, so its path counts
    model.train()
    ids = torch.randint(5, 200, (2, 24))
    labels = ids.clone()
    labels[:, :8] = -100
    mask = torch.ones_like(ids)
    seen = []
    hook = model.get_base_model().gpt_neox.layers[0].mlp.dense_h_to_4h.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype))
    losses, grads = {}, {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        module = target_loss_module()(model, autocast_dtype=dtype)
        model.zero_grad()
        loss, n = module(ids, labels, mask)
        (loss / n).backward()
        losses[name] = float(loss.detach()) / n
        grads[name] = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]  # the matmuls ran in bf16 under autocast
    assert abs(losses["fp32"] - losses["bf16"]) < 0.05 * abs(losses["fp32"])
    for key, grad in grads["bf16"].items():
        assert grad.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(grad.flatten(), grads["fp32"][key].flatten(), dim=0) > 0.95

