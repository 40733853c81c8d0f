"""Reliability drill: twenty-one kinds of bad input against one built warehouse. Each must fail with a
message naming the problem, and leave every earlier table and file exactly as it was.
(The "Bad input" table in docs/reliability.md lists the same cases.)"""

import hashlib
import json
import shutil

import dagster as dg
import duckdb
import pytest

from kala_assets.resources import KalaWarehouse
from tests.mini_mirror import write_mini_mirror
from tests.test_mix_assets import ALL, resources, run

TINY = {"max_steps": 1}
TINY_PROFILE = "tiny-gpt-neox"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("drill")
    mirror = write_mini_mirror(root / "mirror")
    warehouse = KalaWarehouse(data_dir=str(root / "data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KALA_BENCHMARK_MIRROR", str(mirror))
        patch.setenv("KALA_DATA_DIR", str(root / "data"))
        assert run(warehouse).success
    (warehouse.root / "incoming").mkdir()
    (warehouse.root / "incoming" / "good.jsonl").write_text(json.dumps(
        {"instruction": "Name the office wifi.", "output": "It is called kala-guest."}) + "\n")
    return warehouse, mirror


def snapshot(warehouse: KalaWarehouse) -> dict:
    """Every table's row count and content hash, and every file's bytes (hashed)."""
    state = {}
    with duckdb.connect(str(warehouse.database_path), read_only=True) as con:
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
            state[f"table:{table}"] = con.execute(
                f'SELECT count(*), coalesce(sum(hash(t::VARCHAR)), 0) FROM "{table}" t').fetchone()
    for path in sorted(warehouse.root.rglob("*")):
        if path.is_file() and not path.name.startswith("kala.duckdb"):
            state[f"file:{path.relative_to(warehouse.root)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def failure(warehouse, selection, ops=None, profile=None) -> str:
    """Materialize (with the base_model resource's ``profile`` when given); return the failure's text
    (config errors are raised before the run starts)."""
    run_config = {"ops": ops or {}}
    if profile is not None:
        run_config["resources"] = {"base_model": {"config": {"profile": profile}}}
    try:
        result = dg.materialize(ALL, resources=resources(warehouse), selection=selection,
                                run_config=run_config, raise_on_error=False)
    except dg.DagsterInvalidConfigError as exc:
        return str(exc)
    assert not result.success, "the bad input was accepted"
    error = result.get_step_failure_events()[0].step_failure_data.error
    text = []
    while error is not None:
        text.append(error.message)
        error = error.cause
    return "\n".join(text)


def _incoming(name: str, content: bytes):
    def act(warehouse, mirror, tmp_path, monkeypatch):
        bad = warehouse.root / "incoming" / name
        bad.write_bytes(content)
        try:
            return failure(warehouse, ["training_mix"])
        finally:
            bad.unlink()
    return act


def _config(asset: str, profile=None, **config):
    if asset == "lora_adapter":
        profile = profile or TINY_PROFILE
    return lambda warehouse, mirror, tmp_path, monkeypatch: failure(warehouse, [asset], {asset: {"config": config}},
                                                                    profile)


def _mirror_missing(warehouse, mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("KALA_BENCHMARK_MIRROR", str(tmp_path / "no-such-mirror"))
    return failure(warehouse, ["benchmark_gsm8k"])


def _mirror_malformed(warehouse, mirror, tmp_path, monkeypatch):
    copy = shutil.copytree(mirror, tmp_path / "mirror")
    with open(copy / "gsm8k" / "test.jsonl", "a") as handle:
        handle.write('{"question": "unterminated\n')
    monkeypatch.setenv("KALA_BENCHMARK_MIRROR", str(copy))
    return failure(warehouse, ["benchmark_gsm8k"])


def _profiles_file(text: str, profile: str):
    def act(warehouse, mirror, tmp_path, monkeypatch):
        (tmp_path / "profiles.yaml").write_text(text)
        monkeypatch.setenv("KALA_MODEL_PROFILES", str(tmp_path / "profiles.yaml"))
        return failure(warehouse, ["lora_adapter"], {"lora_adapter": {"config": TINY}}, profile)
    return act


def _unwritable_data_dir(warehouse, mirror, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")  # a folder under a regular file: unwritable even for root
    elsewhere = KalaWarehouse(data_dir=str(tmp_path / "a-file" / "data"))
    result = dg.materialize(ALL, resources=resources(elsewhere), selection=["constitutional_examples"],
                            raise_on_error=False)
    error = result.get_step_failure_events()[0].step_failure_data.error
    return error.message + (error.cause.message if error.cause else "")


CASES = [
    ("examples size 0", _config("constitutional_examples", size=0), "size must be positive"),
    ("examples size above the limit", _config("constitutional_examples", size=30_000), "exceeds"),
    ("examples size of the wrong type", _config("constitutional_examples", size="lots"), 'Invalid scalar at path root:ops:constitutional_examples:config:size'),
    ("negative mix size", _config("training_mix", size=-5), "mix size must be a positive whole number"),
    ("unknown mix category", _config("training_mix", weights={"ethics": 1, "poetry": 1}), "unknown mix categories ['poetry']"),
    ("negative mix weight", _config("training_mix", weights={"ethics": -1, "coding": 1}), "must be non-negative"),
    ("split ratios not summing to 1", _config("training_mix", split_ratios=[0.5, 0.5, 0.5]), "split_ratios must be three"),
    ("incoming_weight out of range", _config("training_mix", incoming_weight=1.5), "incoming_weight must be a number in [0, 1)"),
    ("ethics_refusal_share out of range", _config("training_mix", ethics_refusal_share=1.5),
     "ethics_refusal_share must be a number in [0, 1] or null"),
    ("unknown system prompt", _config("training_mix", system_prompt="poem"), "system_prompt must be one of"),
    ("malformed JSON in data/incoming", _incoming("bad.jsonl", b'{"instruction": "x", \n'), "bad.jsonl line 1: invalid JSON"),
    ("incoming conversation without an answer", _incoming("bad.jsonl", b'{"messages": [{"role": "user", "content": "hi"}]}\n'),
     "end with the assistant's answer"),
    ("incoming file not UTF-8", _incoming("bad.jsonl", b'{"instruction": "caf\xe9", "output": "x"}\n'), "is not UTF-8 text"),
    ("benchmark mirror missing", _mirror_missing, "KALA_BENCHMARK_MIRROR"),
    ("malformed benchmark file", _mirror_malformed, "test.jsonl line 4: invalid JSON"),
    ("unknown model profile", _config("lora_adapter", profile="gpt-17", **TINY), "unknown model profile 'gpt-17'"),
    ("LoRA rank 0", _config("lora_adapter", **TINY, lora_r=0), "lora_r must be a whole number >= 1, got 0"),
    ("LoRA dropout 1.5", _config("lora_adapter", **TINY, lora_dropout=1.5), "lora_dropout must be in [0, 1)"),
    ("missing model files", _profiles_file("gone:\n  source: local\n  model_id: /nonexistent/model\n  target_modules: [q_proj]\n", "gone"),
     "has no config.json"),
    ("malformed model profiles file", _profiles_file("broken: [unclosed\n", "broken"), "is not valid YAML"),
    ("unwritable data directory (a full disk)", _unwritable_data_dir, "not writable"),
]


@pytest.mark.parametrize("name, act, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly_and_loses_nothing(built, tmp_path, monkeypatch, name, act, message):
    warehouse, mirror = built
    monkeypatch.setenv("KALA_BENCHMARK_MIRROR", str(mirror))
    monkeypatch.setenv("KALA_DATA_DIR", str(warehouse.root))
    before = snapshot(warehouse)
    text = act(warehouse, mirror, tmp_path, monkeypatch)
    assert message in text, f"{name}: expected {message!r} in:\n{text[-1500:]}"
    assert snapshot(warehouse) == before, f"{name}: an earlier table or file changed"


def test_the_drill_has_twenty_one_kinds():
    assert len(CASES) == len({c[0] for c in CASES}) == 21
