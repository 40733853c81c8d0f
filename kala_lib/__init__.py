"""KALA domain code: Laws, examples, generator, storage helpers. Never imports Dagster."""

from kala_lib.dataset import (
    Behavior,
    ConstitutionalDataset,
    ConstitutionalExample,
    Difficulty,
    ExampleType,
    Turn,
)
from kala_lib.ethics_generator import EthicsExampleGenerator, GeneratorConfig, generate_examples
from kala_lib.laws import DECISION_ORDER, LAWS, LawCategory, winning_law

__all__ = [
    "Behavior",
    "ConstitutionalDataset",
    "ConstitutionalExample",
    "DECISION_ORDER",
    "Difficulty",
    "EthicsExampleGenerator",
    "ExampleType",
    "GeneratorConfig",
    "LAWS",
    "LawCategory",
    "Turn",
    "generate_examples",
    "winning_law",
]
