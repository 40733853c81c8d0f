"""Benchmark: KALA's batched greedy generation against one prompt at a time, same prompts, same run.

Both use `kala_lib.generation.generate` on the embedded SmolLM2 (fp32, CPU) with the KV cache;
the baseline passes one prompt per call (batch_size=1, or ``--baseline-batch``), KALA batches prompts
of similar length with left padding; ``--rounds`` alternates the two and pools them. The outputs must be identical (greedy decoding), which the script checks.

    .venv/bin/python bench/eval_throughput.py [--prompts 16] [--max-new-tokens 32] [--batch 16] [--baseline-batch 1] [--rounds 1]
    .venv/bin/python bench/eval_throughput.py --baseline-batch 32 --batch 32 --baseline-no-shared-prefix
        # the shared system prefix run once (the default) against every row running it, same batch

The last line: speedup=<ratio> prompts_s=<n>
"""

from __future__ import annotations

import argparse
import time

from kala_lib.ethics_generator import EthicsExampleGenerator, GeneratorConfig
from kala_lib.generation import generate
from kala_lib.laws import SHORT_SYSTEM_PROMPT
from kala_lib.models import get_profile, load_model, load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--baseline-batch", type=int, default=1, help="the baseline's batch size (1: one prompt at a time)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate baseline and batched this many times, pooled")
    parser.add_argument("--baseline-no-shared-prefix", action="store_true",
                        help="the baseline runs the shared system prefix in every row (generate(share_prefix=False))")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    profile = get_profile("smollm2-135m")
    tokenizer, model = load_tokenizer(profile), load_model(profile)
    examples = EthicsExampleGenerator(GeneratorConfig(size=max(50, args.prompts), seed=7, heldout=True)).generate()
    conversations = [[{"role": "system", "content": SHORT_SYSTEM_PROMPT}, *[t.as_dict() for t in e.turns]]
                     for e in examples.examples[: args.prompts]]
    generate(model, tokenizer, conversations[:2], profile.prompt_format, max_new_tokens=4)  # warm-up

    single_s = batched_s = 0.0
    for _ in range(args.rounds):  # alternated, so drift in this machine's speed hits both alike
        start = time.perf_counter()
        single = generate(model, tokenizer, conversations, profile.prompt_format, max_new_tokens=args.max_new_tokens,
                          batch_size=args.baseline_batch, share_prefix=not args.baseline_no_shared_prefix)
        single_s += time.perf_counter() - start
        start = time.perf_counter()
        batched = generate(model, tokenizer, conversations, profile.prompt_format, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch)
        batched_s += time.perf_counter() - start
    same = sum(a == b for a, b in zip(single, batched))
    speedup = single_s / batched_s
    print(f"prompts: {len(conversations)}, max new tokens {args.max_new_tokens}, batch {args.batch}")
    total = len(conversations) * args.rounds
    print(f"rounds: {args.rounds}; baseline batch {args.baseline_batch}"
          + ("; the baseline runs the shared prefix per row" if args.baseline_no_shared_prefix else ""))
    print(f"baseline:        {single_s:7.1f} s   {total / single_s:6.2f} prompts/s")
    print(f"batched:         {batched_s:7.1f} s   {total / batched_s:6.2f} prompts/s")
    print(f"identical outputs: {same}/{len(conversations)} (greedy; padding and a shared prefix can change float rounding)")
    print(f"speedup={speedup:.2f} prompts_s={total / batched_s:.2f}")


if __name__ == "__main__":
    main()
