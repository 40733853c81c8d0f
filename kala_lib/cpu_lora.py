"""Faster LoRA layers for training on the CPU: a cheaper dropout mask and a fused LoRA linear.

Both change how PEFT's LoRA layers compute, never what they hold: the adapter's parameters and its
saved files are PEFT's own, so ``PeftModel.from_pretrained`` loads what the trainer writes. On GPUs
PEFT's layers are already fast (fused dropout kernel, cheap elementwise ops): keep them there.
"""

from __future__ import annotations

import functools


@functools.cache
def _fast_dropout_class():
    import torch

    class FastDropout(torch.nn.Module):
        """Dropout whose mask costs a quarter of the CPU generator's draws.

        The CPU generator is serial and costs the same per draw whatever its width, so one 64-bit
        integer feeds four elements: each 16-bit quarter is compared with a threshold. That is a
        Bernoulli(1 - p') keep-mask with p' = p rounded to a multiple of 1/65536 (0.05 -> 0.0500031),
        survivors scaled by 1 / (1 - p') so the expectation is exact."""

        def __init__(self, p: float):
            super().__init__()
            self.p = p
            dropped = min(65535, max(1, round(p * 65536)))  # quarters below the threshold are dropped
            self.threshold = -32768 + dropped
            self.scale = 1.0 / (1.0 - dropped / 65536)

        def drop_mask(self, x):
            """True where an element of ``x`` is dropped (masked_fill with it skips a bool-to-float cast)."""
            n = x.numel()
            # the full int64 range: a plain random_() leaves the top bit 0, biasing the last quarter
            words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
            return words.view(torch.int16)[:n].view(x.shape) < self.threshold

        def forward(self, x):
            if not self.training or self.p == 0:
                return x
            return x.masked_fill(self.drop_mask(x), 0.0).mul_(self.scale)

    return FastDropout


def use_fast_lora_dropout(model) -> int:
    """Swap PEFT's LoRA dropout (nn.Dropout) for FastDropout; returns how many were swapped.

    nn.Dropout draws its masks with bernoulli_, which took 9% of a CPU training step (measured with
    torch.profiler on SmolLM2, plus 8% in the multiplies); FastDropout's mask with its multiply
    took 3.3-4.3 ms against 5.6-7.0 ms for ``rand >= p`` on a 4 x 356 x 576 input, forward and
    backward."""
    import torch

    fast_dropout = _fast_dropout_class()
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                    dropouts[name] = fast_dropout(dropout.p)
                    swapped += 1
    return swapped


@functools.cache
def _fused_lora_function():
    import torch

    class FusedLora(torch.autograd.Function):
        """``x W^T + b + s * (dropout(x) A^T) B^T`` as one autograd node.

        PEFT runs the same sum as separate ops: dropout's two multiplies, the scaling multiply, the
        add, and as many again backward, each a pass over the activations. Here the scales fold into
        ``addmm``'s alpha and the LoRA term accumulates into the base matmul's output (and its
        gradient into the base's input gradient), leaving one masking pass each way."""

        @staticmethod
        def forward(ctx, x, weight, bias, lora_a, lora_b, scale, dropout):
            flat = x.reshape(-1, x.shape[-1])
            out = torch.addmm(bias, flat, weight.t()) if bias is not None else flat @ weight.t()
            drop = None
            if dropout is not None:
                drop = dropout.drop_mask(flat)
                flat = flat.masked_fill(drop, 0.0)
                scale = scale * dropout.scale
            hidden = flat @ lora_a.t()
            out.addmm_(hidden, lora_b.t(), alpha=scale)
            ctx.save_for_backward(flat, drop, weight, lora_a, lora_b, hidden)
            ctx.scale, ctx.x_shape = scale, x.shape
            return out.view(*x.shape[:-1], out.shape[-1])

        @staticmethod
        def backward(ctx, grad):
            dropped, drop, weight, lora_a, lora_b, hidden = ctx.saved_tensors
            scale = ctx.scale
            grad = grad.reshape(-1, grad.shape[-1])
            grad_hidden = (grad @ lora_b).mul_(scale)
            grad_a = grad_hidden.t() @ dropped if ctx.needs_input_grad[3] else None
            grad_b = (grad.t() @ hidden).mul_(scale) if ctx.needs_input_grad[4] else None
            grad_x = None
            if ctx.needs_input_grad[0]:
                if drop is None:
                    grad_x = (grad @ weight).addmm_(grad_hidden, lora_a)
                else:
                    grad_x = (grad_hidden @ lora_a).masked_fill_(drop, 0.0).addmm_(grad, weight)
                grad_x = grad_x.view(ctx.x_shape)
            return grad_x, None, None, grad_a, grad_b, None, None

    return FusedLora


def use_fused_lora(model) -> int:
    """Route each plain LoRA linear (``nn.Linear`` base, no DoRA, no LoRA bias) through FusedLora
    while it trains with gradients on, one adapter active and input in the base's dtype; returns
    how many layers were routed.

    Anything else (evaluation, generation under no_grad, mixed precision: a bfloat16 variant measured
    no faster than PEFT's layers under autocast, 1.30x against 1.34x over float32), merged or disabled adapters, several
    active adapters, quantized or trainable bases) takes PEFT's own forward, so the results are
    PEFT's. A layer keeps its parameters: saving, loading and merging see an ordinary PEFT model. Forward and
    backward match PEFT's with FastDropout under the same seed (same mask draws); SmolLM2 trains
    1.10-1.13x faster with it (docs/architecture.md, "The trainer")."""
    import torch
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = _fused_lora_function()
    fast_dropout = _fast_dropout_class()

    def forward(layer, peft_forward, x, *args, **kwargs):
        adapters = layer.active_adapters
        name = adapters[0] if len(adapters) == 1 else None
        base = layer.base_layer
        if (args or kwargs or name is None or name not in layer.lora_A or not layer.training
                or not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type)
                or layer.disable_adapters or layer.merged
                or x.dtype != base.weight.dtype or base.weight.requires_grad
                or (base.bias is not None and base.bias.requires_grad)):  # FusedLora returns no base gradient
            return peft_forward(x, *args, **kwargs)
        dropout = layer.lora_dropout[name]
        if isinstance(dropout, torch.nn.Identity):
            dropout = None
        elif not isinstance(dropout, fast_dropout):
            return peft_forward(x, *args, **kwargs)
        elif dropout.p == 0:
            dropout = None
        return fused.apply(x, base.weight, base.bias, layer.lora_A[name].weight, layer.lora_B[name].weight,
                           layer.scaling[name], dropout)

    routed = 0
    for module in model.modules():
        if not isinstance(module, LoraLinear) or type(module.base_layer) is not torch.nn.Linear:
            continue
        if getattr(module, "lora_variant", None) or any(b.bias is not None for b in module.lora_B.values()):
            continue
        if getattr(module, "_kala_fused", False):
            continue
        module.forward = functools.partial(forward, module, module.forward)
        module._kala_fused = True
        routed += 1
    return routed
