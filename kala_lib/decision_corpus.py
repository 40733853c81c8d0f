"""KALA's decision corpus: prompts only, labelled harmful or benign, in many styles.

Styles ``question`` and ``instruction`` counter a style shortcut in public data, where harmful prompts are
mostly short questions and benign ones long task instructions. Each category file adds 12 benign
questions full of alarming words (homonyms, defence, history, medical and legal help) and 12 harmful
multi-sentence task instructions (write a guide, draft an email, produce a table), plus 6 harmful questions
and 6 benign instructions, so neither style predicts the label: the model has to read the intent.

The generated examples teach the decision on one-line requests built from templates; this corpus
(``ethics_data/decision/<category>.yaml``, written and reviewed for KALA) adds the shapes a real
user sends: typos, long pasted context, role-play on both sides, multi-turn escalation, indirect
asks and benign prompts full of alarming words. It feeds decision rows (prompt -> decision token)
and the validation split the dial is calibrated on; it has no answers, so it never feeds SFT text.

Run ``python -m kala_lib.decision_corpus [FILE ...]`` to validate files while writing them.
"""

from __future__ import annotations

import functools
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DECISION_DIR = Path(__file__).with_name("ethics_data") / "decision"
HARM_DIR = Path(__file__).with_name("ethics_data") / "harm"
STYLES = (
    "plain", "typos", "long_context", "roleplay", "multi_turn", "indirect", "lookalike",
    "professional", "short", "format",
    # both labels in each: benign short questions with alarming words, harmful long task instructions
    "question", "instruction",
)
LABELS = ("harmful", "benign")
#: Fewest prompts per label in one category file (the issue asks >= 1,200 per label over 12 files).
MIN_PER_LABEL = 100
_ID = re.compile(r"^[a-z][a-z0-9_]*_[hb]\d{3}$")


class DecisionCorpusError(ValueError):
    """A decision file breaks the schema; the message names the file, the prompt and the fix."""


@dataclass(frozen=True)
class DecisionPrompt:
    """One prompt: ``messages`` is the conversation up to (and ending with) the user's turn."""

    id: str
    category: str
    law: int  # the Law a harmful prompt is refused under (the category's Law); benign ones too, for reporting
    label: str
    style: str
    messages: tuple[tuple[str, str], ...]  # (role, content)

    @property
    def harmful(self) -> bool:
        return self.label == "harmful"

    @property
    def text(self) -> str:
        """The whole conversation as one string (for decontamination and review)."""
        return "\n".join(content for _, content in self.messages)


def _fail(path: Path, where: str, problem: str) -> DecisionCorpusError:
    return DecisionCorpusError(f"{path.name}: {where}: {problem}")


def _category_law(category: str) -> int:
    harm_file = HARM_DIR / f"{category}.yaml"
    if not harm_file.exists():
        raise DecisionCorpusError(
            f"category {category!r} has no harm/{category}.yaml: use one of "
            f"{', '.join(sorted(p.stem for p in HARM_DIR.glob('*.yaml')))}"
        )
    return int(yaml.safe_load(harm_file.read_text(encoding="utf-8"))["law"])


def _content(value: Any, path: Path, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, "needs a non-empty string")
    return value.strip()


def _prompt(entry: Any, path: Path, index: int, category: str, law: int) -> DecisionPrompt:
    where = f"prompt {index + 1}"
    if not isinstance(entry, dict):
        raise _fail(path, where, "each prompt must be a mapping with id, label, style and text or turns")
    unknown = set(entry) - {"id", "label", "style", "text", "turns", "pair", "law"}
    if unknown:
        raise _fail(path, where, f"unknown fields {sorted(unknown)}: use id, label, style, text or turns (and law)")
    pid = entry.get("id")
    if not isinstance(pid, str) or not _ID.match(pid) or not pid.startswith(f"{category}_"):
        raise _fail(path, where, f"'id' must look like {category}_h001 (harmful) or {category}_b001 (benign), got {pid!r}")
    where = f"prompt {pid}"
    label = entry.get("label")
    if label not in LABELS:
        raise _fail(path, where, f"'label' must be harmful or benign, got {label!r}")
    if pid[len(category) + 1] != label[0]:
        raise _fail(path, where, f"id letter must match the label ({label[0]} for {label})")
    style = entry.get("style")
    if style not in STYLES:
        raise _fail(path, where, f"'style' must be one of {', '.join(STYLES)}, got {style!r}")
    if style == "multi_turn":
        turns = entry.get("turns")
        if "text" in entry or not isinstance(turns, list) or len(turns) not in (3, 5, 7):
            raise _fail(path, where, "multi_turn prompts give 'turns' (3, 5 or 7 of them), not 'text'")
        messages = []
        for j, turn in enumerate(turns):
            want = "user" if j % 2 == 0 else "assistant"
            if not isinstance(turn, dict) or turn.get("role") != want:
                raise _fail(path, where, f"turn {j + 1} must be a mapping with role {want} (turns alternate, user first and last)")
            messages.append((want, _content(turn.get("content"), path, f"{where} turn {j + 1}")))
    else:
        if "turns" in entry:
            raise _fail(path, where, "only multi_turn prompts have 'turns'; give 'text'")
        messages = [("user", _content(entry.get("text"), path, where))]
    own_law = entry.get("law", law)  # a prompt whose harm falls under a higher Law than its category's names it
    if isinstance(own_law, bool) or not isinstance(own_law, int) or not 0 <= own_law <= 4:
        raise _fail(path, where, f"'law' must be a whole number 0-4, got {own_law!r}")
    return DecisionPrompt(pid, category, own_law, label, style, tuple(messages))


def load_file(path: str | Path, *, strict: bool = True) -> list[DecisionPrompt]:
    """Parse one category file. ``strict`` also enforces the per-label minimum and style coverage."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DecisionCorpusError(f"{path.name}: not valid YAML ({exc}); quote strings with double quotes") from None
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list):
        raise DecisionCorpusError(f"{path.name}: expected a mapping with 'category' and a list 'prompts'")
    category = data.get("category")
    if category != path.stem:
        raise DecisionCorpusError(f"{path.name}: 'category' must be {path.stem!r} (the file name), got {category!r}")
    law = _category_law(category)
    prompts = [_prompt(e, path, i, category, law) for i, e in enumerate(data["prompts"])]
    ids = Counter(p.id for p in prompts)
    if dupes := [i for i, n in ids.items() if n > 1]:
        raise DecisionCorpusError(f"{path.name}: ids used more than once: {dupes[:5]}")
    if strict:
        for label in LABELS:
            mine = [p for p in prompts if p.label == label]
            if len(mine) < MIN_PER_LABEL:
                raise DecisionCorpusError(f"{path.name}: {len(mine)} {label} prompts, needs at least {MIN_PER_LABEL}")
            missing = set(STYLES) - {p.style for p in mine}
            if missing:
                raise DecisionCorpusError(f"{path.name}: no {label} prompts in styles {sorted(missing)}")
    return prompts


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def _shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def validate_corpus(prompts: list[DecisionPrompt]) -> None:
    """Corpus-wide: no prompt repeats another, and no two share an 8-word run (template clones)."""
    seen: dict[str, str] = {}
    runs: dict[tuple[str, ...], str] = {}
    for p in prompts:
        norm = normalise(p.text)
        if norm in seen:
            raise DecisionCorpusError(f"prompt {p.id} repeats {seen[norm]}")
        seen[norm] = p.id
        for run in _shingles(p.messages[-1][1]):
            other = runs.setdefault(run, p.id)
            if other != p.id:
                raise DecisionCorpusError(f"prompts {other} and {p.id} share the 8-word run {' '.join(run)!r}: rephrase one")


@functools.lru_cache(maxsize=2)
def _load_all(directory: str) -> tuple[DecisionPrompt, ...]:
    files = sorted(Path(directory).glob("*.yaml"))
    prompts = [p for path in files for p in load_file(path)]
    validate_corpus(prompts)
    return tuple(prompts)


def decision_prompts(directory: str | Path = DECISION_DIR) -> tuple[DecisionPrompt, ...]:
    """Every prompt of every ``decision/*.yaml``, validated (cached per directory)."""
    return _load_all(str(directory))


def summary(prompts: list[DecisionPrompt] | tuple[DecisionPrompt, ...]) -> dict[str, Any]:
    return {
        "prompts": len(prompts),
        "labels": dict(Counter(p.label for p in prompts)),
        "styles": {label: dict(Counter(p.style for p in prompts if p.label == label)) for label in LABELS},
        "laws": dict(Counter(p.law for p in prompts if p.harmful)),
    }


def main(argv: list[str]) -> int:
    from kala_lib.ethics_corpus import check_files

    paths = [Path(p) for p in argv] or sorted(DECISION_DIR.glob("*.yaml"))
    return check_files(paths, load_file, validate_corpus, summary, DecisionCorpusError)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
