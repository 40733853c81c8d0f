"""KALA's CPU LoRA layers (kala_lib/cpu_lora.py): FastDropout keeps dropout's distribution, and the
fused LoRA linear gives PEFT's loss and gradients on both architectures (GPT-NeoX with biases,
Llama without), with dropout and without, and steps aside outside training."""

import copy

import pytest
import torch

from kala_lib.cpu_lora import use_fast_lora_dropout, use_fused_lora
from kala_lib.models import load_model


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).float()


ARCHITECTURES = {
    "gpt-neox": (lambda: load_model("tiny-gpt-neox"), ["query_key_value", "dense"]),
    "llama": (tiny_llama, ["q_proj", "k_proj", "v_proj", "o_proj"]),
}


def peft_pair(architecture: str, dropout: float):
    """Two identical LoRA models with FastDropout; only the second routed through the fused layer."""
    from peft import LoraConfig, get_peft_model

    build, targets = ARCHITECTURES[architecture]
    plain = get_peft_model(build(), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, task_type="CAUSAL_LM",
                                               target_modules=targets))
    torch.manual_seed(4)
    for name, parameter in plain.named_parameters():
        if "lora_B" in name:  # non-zero B, so every LoRA term contributes to the output and the gradients
            torch.nn.init.normal_(parameter, std=0.05)
    fused = copy.deepcopy(plain)
    expected = 2 * len(targets)  # 2 layers x target modules
    assert use_fast_lora_dropout(plain) == use_fast_lora_dropout(fused) == (expected if dropout else 0)
    assert use_fused_lora(fused) == expected
    assert use_fused_lora(fused) == 0  # routing twice is a no-op
    return plain, fused


def batch(vocab: int):
    torch.manual_seed(5)
    input_ids = torch.randint(3, vocab - 1, (3, 17))
    attention = torch.ones_like(input_ids)
    attention[1, 12:] = 0  # right padding
    labels = input_ids.masked_fill(attention == 0, -100)
    return input_ids, attention, labels


def graph_names(tensor) -> set[str]:
    seen, names, stack = set(), set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack += [next_fn for next_fn, _ in node.next_functions]
    return names


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_lora_gives_peft_loss_and_gradients(architecture, dropout):
    plain, fused = peft_pair(architecture, dropout)
    input_ids, attention, labels = batch(plain.config.vocab_size)
    results = []
    for model in (plain, fused):
        model.train()
        torch.manual_seed(11)  # the same dropout draws for both
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((float(loss), grads, graph_names(loss)))
    (loss_a, grads_a, graph_a), (loss_b, grads_b, graph_b) = results
    assert "FusedLoraBackward" in graph_b and "FusedLoraBackward" not in graph_a
    assert loss_b == pytest.approx(loss_a, rel=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 2 * len(ARCHITECTURES[architecture][1]) * 2
    for name in grads_a:
        a, b = grads_a[name], grads_b[name]
        assert float(a.norm()) > 0, name
        assert float((a - b).norm()) <= 1e-4 * float(a.norm()), (name, float((a - b).norm()), float(a.norm()))


def test_fused_lora_draws_a_fresh_mask_that_changes_the_loss():
    """With dropout on, two forwards differ (the mask is live), and evaluation matches PEFT exactly."""
    plain, fused = peft_pair("gpt-neox", 0.3)
    input_ids, attention, labels = batch(plain.config.vocab_size)
    fused.train()
    first = float(fused(input_ids=input_ids, attention_mask=attention, labels=labels).loss)
    second = float(fused(input_ids=input_ids, attention_mask=attention, labels=labels).loss)
    assert first != second
    plain.eval()
    fused.eval()
    with torch.no_grad():
        a = plain(input_ids=input_ids, attention_mask=attention).logits
        b = fused(input_ids=input_ids, attention_mask=attention).logits
    assert torch.equal(a, b)  # outside training the fused model runs PEFT's own forward
    out = fused(input_ids=input_ids, attention_mask=attention, labels=labels).loss  # eval mode, grads on
    assert "FusedLoraBackward" not in graph_names(out)
    fused.train()
    for module in fused.modules():  # a base that trains too needs PEFT's path, which gives it gradients
        if hasattr(module, "base_layer"):
            module.base_layer.weight.requires_grad_(True)
    out = fused(input_ids=input_ids, attention_mask=attention, labels=labels).loss
    assert "FusedLoraBackward" not in graph_names(out)


def test_fused_lora_leaves_the_saved_adapter_as_peft_writes_it(tmp_path):
    from peft import PeftModel

    plain, fused = peft_pair("gpt-neox", 0.05)
    fused.save_pretrained(tmp_path / "fused")
    loaded = PeftModel.from_pretrained(load_model("tiny-gpt-neox"), tmp_path / "fused")
    saved = {n: p for n, p in loaded.named_parameters() if "lora_" in n}
    assert saved and all(torch.equal(p, dict(plain.named_parameters())[n]) for n, p in saved.items())


def test_fast_lora_dropout_keeps_the_distribution():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_model("tiny-gpt-neox"), LoraConfig(r=4, lora_dropout=0.2, task_type="CAUSAL_LM",
                                                                   target_modules=["query_key_value", "dense"]))
    assert use_fast_lora_dropout(model) == 4  # 2 layers x 2 target modules
    dropout = next(m for m in model.modules() if type(m).__name__ == "FastDropout")
    x = torch.ones(200_000)
    dropout.train()
    y = dropout(x)
    kept = (y != 0).float()
    assert abs(float(kept.mean()) - 0.8) < 0.01 and torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.8))
    # each 64-bit draw feeds four elements: every one of the four lanes must keep 80% on its own
    for lane in range(4):
        assert abs(float(kept[lane::4].mean()) - 0.8) < 0.01, lane
    assert not torch.equal(dropout(x), y)  # a fresh mask per call
    assert dropout(torch.ones(3, 7, 5)).shape == (3, 7, 5)  # sizes that are not a multiple of four
    assert abs(float(y.mean()) - 1.0) < 0.01  # unbiased, like nn.Dropout
    dropout.eval()
    assert torch.equal(dropout(x), x)
