"""KALA's written ethics material, read from reviewed YAML files under ``kala_lib/ethics_data/``.

The generator's content is data, not Python literals: ``harm/<category>.yaml`` holds families of
harmful requests (refused) with benign twins that share their alarming words (answered), and
``templates.yaml`` the stems and wrappers that phrase every request, whatever its label. This
module loads those files, validates them (a bad file is an error naming the file, entry and fix),
and returns frozen dataclasses the generator combines.

Run ``python -m kala_lib.ethics_corpus [FILE ...]`` to validate files while writing them.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kala_lib.judge import judge
from kala_lib.laws import LawCategory

DATA_DIR = Path(__file__).with_name("ethics_data")
HARM_DIR = DATA_DIR / "harm"

BENIGN_TYPES = (
    "homonym", "figurative", "safe_target", "safe_context", "definition", "real_discrimination",
    "nonsense_discrimination", "history", "public_figure_privacy", "fictional_privacy", "education",
)
#: Types that sound alarming on purpose (EDGE_CASE examples); the rest are plain safe requests.
LOOKALIKE_TYPES = frozenset({
    "homonym", "figurative", "safe_target", "safe_context", "nonsense_discrimination", "fictional_privacy",
})
FORMS = ("how", "task", "context")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class CorpusError(ValueError):
    """A content file breaks the schema; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Request:
    """One distinct request. ``form``: how (completes "How do I ..."), task ("Can you ..."), context.

    ``text`` is the verb phrase (for ``context`` the instruction about the passage). ``answer`` is
    the helpful reply for benign requests and empty for harmful ones.
    """

    key: str  # family key + index, unique across the corpus: the unit of train/val/test splits
    form: str
    text: str
    context: str = ""
    type: str = ""  # benign type (one of BENIGN_TYPES); "harmful" for harmful requests
    answer: str = ""

    @property
    def harmful(self) -> bool:
        return self.type == "harmful"


@dataclass(frozen=True)
class Family:
    key: str
    category: str
    law: LawCategory
    harm: str
    principle: str
    alternative: str
    harmful: tuple[Request, ...]
    benign: tuple[Request, ...]


def _fail(path: Path, where: str, problem: str) -> CorpusError:
    return CorpusError(f"{path.name}: {where}: {problem}")


def _text(value: Any, path: Path, where: str, field: str, *, lower_start: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"'{field}' must be a non-empty string")
    value = " ".join(value.split())
    if lower_start and value[:1].isupper() and not value[:2].isupper() and not value.startswith("I "):
        raise _fail(path, where, f"'{field}' must start lower-case (it completes a sentence): {value!r}")
    if lower_start and value[-1:] in ".?!":
        raise _fail(path, where, f"'{field}' must not end with punctuation (it completes a sentence): {value!r}")
    return value


def _request(entry: Any, path: Path, where: str, key: str, harmful: bool) -> Request:
    if not isinstance(entry, dict):
        raise _fail(path, where, "each request must be a mapping with 'how', 'task' or 'context'+'task'")
    unknown = set(entry) - {"how", "task", "context", "type", "answer"}
    if unknown:
        raise _fail(path, where, f"unknown fields {sorted(unknown)}: use how, task, context, type, answer")
    if "how" in entry and ("task" in entry or "context" in entry):
        raise _fail(path, where, "give either 'how' or 'task' (with optional 'context'), not both")
    if "how" in entry:
        form, text, context = "how", _text(entry["how"], path, where, "how", lower_start=True), ""
    elif "task" in entry:
        text = _text(entry["task"], path, where, "task", lower_start=True)
        context = _text(entry["context"], path, where, "context") if "context" in entry else ""
        form = "context" if context else "task"
    else:
        raise _fail(path, where, "a request needs 'how' or 'task'")
    if harmful:
        if "answer" in entry or "type" in entry:
            raise _fail(path, where, "harmful requests have no 'answer' or 'type' (the refusal is built from the family)")
        return Request(key, form, text, context, "harmful")
    kind = entry.get("type")
    if kind not in BENIGN_TYPES:
        raise _fail(path, where, f"benign 'type' must be one of {', '.join(BENIGN_TYPES)}, got {kind!r}")
    answer = _text(entry.get("answer"), path, where, "answer")
    verdict = judge(answer)
    if verdict.refused:
        raise _fail(path, where, f"the judge reads this answer as a refusal ({verdict.label}); rephrase its opening: {answer[:120]!r}")
    return Request(key, form, text, context, kind, answer)


def load_file(path: str | Path) -> list[Family]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CorpusError(f"{path.name}: not valid YAML ({exc}); quote strings with double quotes") from None
    if not isinstance(data, dict) or not isinstance(data.get("families"), list):
        raise CorpusError(f"{path.name}: expected a mapping with 'category', 'law' and a list 'families'")
    category = data.get("category")
    if not isinstance(category, str) or not _KEY.match(category):
        raise CorpusError(f"{path.name}: 'category' must be a snake_case key, got {category!r}")
    families = []
    for i, raw in enumerate(data["families"]):
        where = f"family {i + 1}"
        if not isinstance(raw, dict):
            raise _fail(path, where, "must be a mapping")
        key = raw.get("key")
        if not isinstance(key, str) or not _KEY.match(key):
            raise _fail(path, where, f"'key' must be a snake_case string, got {key!r}")
        where = f"family {key}"
        try:
            law = LawCategory.parse(raw.get("law", data.get("law")))
        except ValueError as exc:
            raise _fail(path, where, str(exc)) from None
        principle = _text(raw.get("principle"), path, where, "principle")
        if f"Law {int(law)}" not in principle:
            raise _fail(path, where, f"'principle' must cite 'Law {int(law)}': {principle!r}")
        harmful = tuple(
            _request(e, path, f"{where} harmful {j + 1}", f"{key}:h{j + 1:02d}", True)
            for j, e in enumerate(raw.get("harmful") or ())
        )
        benign = tuple(
            _request(e, path, f"{where} benign {j + 1}", f"{key}:b{j + 1:02d}", False)
            for j, e in enumerate(raw.get("benign") or ())
        )
        if len(harmful) < 2 or len(benign) < 2:
            raise _fail(path, where, "needs at least 2 harmful and 2 benign requests (one of each is held out for evaluation)")
        families.append(Family(
            key, category, law,
            _text(raw.get("harm"), path, where, "harm", lower_start=True),
            principle,
            _text(raw.get("alternative"), path, where, "alternative"),
            harmful, benign,
        ))
    return families


def validate_corpus(families: list[Family]) -> None:
    """Corpus-wide rules: unique family keys, distinct requests, distinct answers."""
    seen_keys: dict[str, str] = {}
    seen_text: dict[str, str] = {}
    seen_answer: dict[str, str] = {}
    for family in families:
        if family.key in seen_keys:
            raise CorpusError(f"family key {family.key!r} appears in both {seen_keys[family.key]} and {family.category}")
        seen_keys[family.key] = family.category
        for request in family.harmful + family.benign:
            norm = _norm(request.context + " " + request.text)
            if norm in seen_text:
                raise CorpusError(f"request {request.key} repeats {seen_text[norm]}: {request.text!r}")
            seen_text[norm] = request.key
            if request.answer:
                norm_answer = _norm(request.answer)
                if norm_answer in seen_answer:
                    raise CorpusError(f"answer of {request.key} repeats the answer of {seen_answer[norm_answer]}")
                seen_answer[norm_answer] = request.key


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


@functools.lru_cache(maxsize=4)
def _load_all(directory: str) -> tuple[Family, ...]:
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise CorpusError(f"no content files in {directory}: the ethics corpus is missing from this checkout")
    families = [f for path in files for f in load_file(path)]
    validate_corpus(families)
    return tuple(families)


def families(directory: str | Path = HARM_DIR) -> tuple[Family, ...]:
    """Every family of every ``harm/*.yaml``, validated (cached per directory)."""
    return _load_all(str(directory))


@functools.lru_cache(maxsize=1)
def templates() -> dict[str, Any]:
    """The phrasing banks of ``templates.yaml`` (stems, wrappers, refusal openers...)."""
    path = DATA_DIR / "templates.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CorpusError(f"{path.name}: expected a mapping of phrase banks")
    return data


@functools.lru_cache(maxsize=1)
def dialogues() -> dict[str, Any]:
    """Law conflicts and multi-turn scenarios (``dialogues.yaml``)."""
    path = DATA_DIR / "dialogues.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def summary(fams: tuple[Family, ...] | list[Family]) -> dict[str, Any]:
    from collections import Counter

    benign = [r for f in fams for r in f.benign]
    return {
        "families": len(fams),
        "harmful": sum(len(f.harmful) for f in fams),
        "benign": len(benign),
        "benign_types": dict(Counter(r.type for r in benign)),
        "forms": dict(Counter(r.form for f in fams for r in f.harmful + f.benign)),
        "laws": dict(Counter(int(f.law) for f in fams)),
    }


def check_files(paths: list[Path], load, validate, summarize, error: type[Exception]) -> int:
    """A corpus CLI's body (this one's and decision_corpus's): load each file, validate them
    together, print each file's summary and the whole's; 1 with the error on stderr when invalid."""
    try:
        by_file = {path: load(path) for path in paths}
        loaded = [item for items in by_file.values() for item in items]
        validate(loaded)
    except error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path, items in by_file.items():
        print(path.name, summarize(items))
    print("ok", summarize(loaded))
    return 0


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted(HARM_DIR.glob("*.yaml"))
    return check_files(paths, load_file, validate_corpus, summary, CorpusError)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
