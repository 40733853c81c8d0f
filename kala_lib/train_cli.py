"""Train a LoRA adapter from the command line, without Dagster:

    python -m kala_lib.train_cli --config run.yaml [--set max_steps=20 --set lora_r=8]

Under ``torchrun --nproc_per_node=N`` or ``accelerate launch`` the same command trains with DDP.
Exit code 0 when training finished or was halted by ethics validation (see result.json), 2 for a
configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys

from kala_lib.training import TrainingError, load_config, train


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise TrainingError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON or YAML file with TrainConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one field")
    parser.add_argument("--system-prompt", default=None, help="system turn used for ethics validation")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, **parse_overrides(args.set))
        result = train(config, system_prompt=args.system_prompt)
    except (TrainingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: result.as_dict()[k] for k in ("status", "steps", "final_loss", "adapter_dir", "halt_reason")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
