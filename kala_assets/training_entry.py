"""The training subprocess that the `lora_adapter` asset launches through Dagster Pipes.

It is ``kala_lib.training.train`` with a reporter that forwards progress to the Dagster run log;
outside Dagster, use ``python -m kala_lib.train_cli`` (same trainer, stdout reporter).
"""

from dagster_pipes import PipesContext, open_dagster_pipes

from kala_lib.training import Reporter, load_config, train


class PipesReporter(Reporter):
    def __init__(self, pipes: PipesContext, every: int):
        self.pipes = pipes
        self.every = every

    def log(self, message: str) -> None:
        self.pipes.log.info(message)


def main() -> None:
    with open_dagster_pipes() as pipes:
        config = load_config(pipes.get_extra("config_path"))
        result = train(config, PipesReporter(pipes, config.log_every), system_prompt=pipes.get_extra("system_prompt"))
        pipes.log.info(f"training {result.status} after {result.steps} steps; result in {result.output_dir}/result.json")


if __name__ == "__main__":
    main()
