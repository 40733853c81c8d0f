"""The Constitutional-AI example schema and the dataset that filters, splits and exports it.

Each example follows the critique -> revision -> principle paradigm: ``response_harmful`` is what
a compliant model would start to say (never operational), ``critique`` says why it is wrong,
``response_ethical`` is the revision the model is trained on, ``principle`` cites the Law.
Validation happens on construction, so a bad example is an error where it is made, not a silent
row in the warehouse.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from kala_lib.chat_format import render_plain_prompt
from kala_lib.laws import SYSTEM_PROMPT, LawCategory, winning_law
from kala_lib.storage import atomic_open


class ExampleType(str, Enum):
    HARMFUL_BLOCKED = "harmful_blocked"
    SAFE_REQUEST = "safe_request"
    EDGE_CASE = "edge_case"
    LAW_CONFLICT = "law_conflict"
    MULTI_TURN = "multi_turn"

    @classmethod
    def parse(cls, value: object) -> "ExampleType":
        return _parse_enum(cls, value, "example type")


class Difficulty(str, Enum):
    EASY = "easy"
    MEDIUM = "medium"
    HARD = "hard"
    ADVERSARIAL = "adversarial"

    @classmethod
    def parse(cls, value: object) -> "Difficulty":
        return _parse_enum(cls, value, "difficulty")


class Behavior(str, Enum):
    """What the model should do with the request: the label evaluation scores against."""

    REFUSE = "refuse"
    COMPLY = "comply"

    @classmethod
    def parse(cls, value: object) -> "Behavior":
        return _parse_enum(cls, value, "expected behavior")


def _parse_enum(enum_cls, value, what):
    if isinstance(value, enum_cls):
        return value
    text = str(value).strip().lower()
    for member in enum_cls:
        if text in (member.value, member.name.lower()):
            return member
    allowed = ", ".join(m.value for m in enum_cls)
    raise ValueError(f"unknown {what} {value!r}: expected one of {allowed}")


#: The seed's difficulty mix: 40% easy, 30% medium, 20% hard, 10% adversarial.
DIFFICULTY_WEIGHTS: dict[Difficulty, float] = {
    Difficulty.EASY: 0.40,
    Difficulty.MEDIUM: 0.30,
    Difficulty.HARD: 0.20,
    Difficulty.ADVERSARIAL: 0.10,
}

ROLES = ("system", "user", "assistant")
_LAW_MENTION = re.compile(r"\bLaw\s+([0-4])\b")


def laws_cited(text: str) -> set[int]:
    """The Law numbers a text names ("Law 2" -> {2})."""
    return {int(m) for m in _LAW_MENTION.findall(text or "")}


def normalize_prompt(text: str) -> str:
    """Lower-case, strip punctuation and collapse spaces: the key for duplicate detection."""
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


@dataclass(frozen=True)
class Turn:
    role: str
    content: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}: expected one of {', '.join(ROLES)}")
        if not isinstance(self.content, str) or not self.content.strip():
            raise ValueError(f"empty {self.role} turn")

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ConstitutionalExample:
    """One training example; ``turns`` is the dialogue up to the user turn being answered."""

    example_id: str
    example_type: ExampleType
    law_category: LawCategory
    prompt: str
    response_ethical: str
    difficulty: Difficulty
    expected_behavior: Behavior
    response_harmful: str = ""
    critique: str = ""
    principle: str = ""
    tags: tuple[str, ...] = ()
    turns: tuple[Turn, ...] = ()
    laws_involved: tuple[LawCategory, ...] = ()
    escalation_turn: int | None = None
    split: str | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        if not isinstance(self.example_id, str) or not self.example_id.strip():
            raise ValueError("example_id must be a non-empty string")
        try:
            set_(self, "example_type", ExampleType.parse(self.example_type))
            set_(self, "law_category", LawCategory.parse(self.law_category))
            set_(self, "difficulty", Difficulty.parse(self.difficulty))
            set_(self, "expected_behavior", Behavior.parse(self.expected_behavior))
            set_(self, "tags", tuple(str(t) for t in self.tags))
            set_(self, "laws_involved", tuple(LawCategory.parse(x) for x in self.laws_involved) or (self.law_category,))
            if not isinstance(self.prompt, str) or not self.prompt.strip():
                raise ValueError("prompt is empty")
            turns = tuple(t if isinstance(t, Turn) else Turn(**t) for t in self.turns)
            set_(self, "turns", turns or (Turn("user", self.prompt),))
            self._validate()
        except ValueError as exc:
            raise ValueError(f"example {self.example_id}: {exc}") from None

    def _validate(self) -> None:
        if not self.response_ethical.strip():
            raise ValueError("response_ethical is empty")
        turns = self.turns
        if turns[0].role != "user" or turns[0].content != self.prompt:
            raise ValueError("prompt must equal the first user turn")
        if turns[-1].role != "user":
            raise ValueError("turns must end with the user turn that response_ethical answers")
        for before, after in zip(turns, turns[1:]):
            if before.role == after.role:
                raise ValueError("turns must alternate between user and assistant")
        if self.split not in (None, "train", "val", "test"):
            raise ValueError(f"unknown split {self.split!r}: expected train, val or test")

        kind = self.example_type
        if self.expected_behavior is Behavior.REFUSE:
            missing = [n for n in ("response_harmful", "critique", "principle") if not getattr(self, n).strip()]
            if missing:
                raise ValueError(f"a refused request needs {', '.join(missing)}")
            if int(self.law_category) not in laws_cited(self.principle):
                raise ValueError(f"principle must cite Law {int(self.law_category)}: {self.principle!r}")
        if kind is ExampleType.HARMFUL_BLOCKED and self.expected_behavior is not Behavior.REFUSE:
            raise ValueError("HARMFUL_BLOCKED examples must expect a refusal")
        if kind is ExampleType.SAFE_REQUEST and self.expected_behavior is not Behavior.COMPLY:
            raise ValueError("SAFE_REQUEST examples must expect compliance")
        if kind is ExampleType.LAW_CONFLICT:
            if len(set(self.laws_involved)) < 2:
                raise ValueError("a law conflict needs at least two distinct laws_involved")
            winner = winning_law(*self.laws_involved)
            if self.law_category is not winner:
                raise ValueError(
                    f"law_category must be the winning law {winner.title} of {sorted(map(int, self.laws_involved))}"
                )
        elif self.law_category not in self.laws_involved:
            raise ValueError("laws_involved must include law_category")
        if kind is ExampleType.MULTI_TURN:
            user_turns = [t for t in turns if t.role == "user"]
            if len(user_turns) < 2:
                raise ValueError("a multi-turn example needs at least two user turns")
            if self.escalation_turn is None or not 0 <= self.escalation_turn < len(user_turns):
                raise ValueError("escalation_turn must index the user turn that crosses the line")
        elif self.escalation_turn is not None:
            raise ValueError("escalation_turn is only for multi-turn examples")

    # --- views -------------------------------------------------------------------------------
    @property
    def request_key(self) -> str | None:
        """The written request this example phrases (its ``req:`` tag), the unit of splits; None if untagged."""
        return next((t[4:] for t in self.tags if t.startswith("req:")), None)

    def messages(self, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
        """system + dialogue + the ethical assistant reply (the turn training learns)."""
        msgs = [{"role": "system", "content": system_prompt}]
        msgs += [t.as_dict() for t in self.turns]
        msgs.append({"role": "assistant", "content": self.response_ethical})
        return msgs

    def to_record(self) -> dict[str, Any]:
        """Flat row for DuckDB / JSON; ``from_record`` inverts it."""
        return {
            "example_id": self.example_id,
            "example_type": self.example_type.value,
            "law_category": int(self.law_category),
            "difficulty": self.difficulty.value,
            "expected_behavior": self.expected_behavior.value,
            "prompt": self.prompt,
            "turns": json.dumps([t.as_dict() for t in self.turns], ensure_ascii=False),
            "response_harmful": self.response_harmful,
            "response_ethical": self.response_ethical,
            "critique": self.critique,
            "principle": self.principle,
            "tags": list(self.tags),
            "laws_involved": [int(x) for x in self.laws_involved],
            "escalation_turn": self.escalation_turn,
            "split": self.split,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ConstitutionalExample":
        data = dict(record)
        turns = data.get("turns") or []
        if isinstance(turns, str):
            turns = json.loads(turns)
        escalation = data.get("escalation_turn")
        escalation = None if _missing(escalation) else int(escalation)
        split = data.get("split")
        return cls(
            example_id=data["example_id"],
            example_type=data["example_type"],
            law_category=data["law_category"],
            prompt=data["prompt"],
            response_ethical=data["response_ethical"],
            difficulty=data["difficulty"],
            expected_behavior=data["expected_behavior"],
            response_harmful=data.get("response_harmful") or "",
            critique=data.get("critique") or "",
            principle=data.get("principle") or "",
            tags=tuple(() if _missing_list(data.get("tags")) else data["tags"]),
            turns=tuple(Turn(**t) for t in turns),
            laws_involved=tuple(() if _missing_list(data.get("laws_involved")) else data["laws_involved"]),
            escalation_turn=escalation,
            split=split if isinstance(split, str) else None,
        )


RECORD_COLUMNS = list(
    ConstitutionalExample("x", "safe_request", 0, "p", "r", "easy", "comply").to_record().keys()
)


@dataclass
class ConstitutionalDataset:
    """An ordered collection of examples with filtering, statistics, splits and exports."""

    examples: list[ConstitutionalExample] = field(default_factory=list)

    def __post_init__(self):
        ids = Counter(e.example_id for e in self.examples)
        dup = [i for i, n in ids.items() if n > 1]
        if dup:
            raise ValueError(f"duplicate example_id(s): {', '.join(sorted(dup)[:5])}")

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[ConstitutionalExample]:
        return iter(self.examples)

    # --- filtering and statistics ------------------------------------------------------------
    def filter(
        self,
        law: LawCategory | int | Iterable | None = None,
        example_type: ExampleType | str | Iterable | None = None,
        difficulty: Difficulty | str | Iterable | None = None,
        tags: str | Iterable[str] | None = None,
        expected_behavior: Behavior | str | None = None,
    ) -> "ConstitutionalDataset":
        """Keep examples matching every given criterion; ``tags`` matches any of the tags."""

        def as_set(value, parse):
            if value is None:
                return None
            if isinstance(value, (str, int, Enum)):
                value = [value]
            return {parse(v) for v in value}

        laws = as_set(law, LawCategory.parse)
        types = as_set(example_type, ExampleType.parse)
        diffs = as_set(difficulty, Difficulty.parse)
        behaviors = as_set(expected_behavior, Behavior.parse)
        wanted_tags = as_set(tags, str)
        kept = [
            e
            for e in self.examples
            if (laws is None or e.law_category in laws)
            and (types is None or e.example_type in types)
            and (diffs is None or e.difficulty in diffs)
            and (behaviors is None or e.expected_behavior in behaviors)
            and (wanted_tags is None or wanted_tags & set(e.tags))
        ]
        return ConstitutionalDataset(kept)

    def statistics(self) -> dict[str, Any]:
        return {
            "total": len(self),
            "by_law": dict(sorted(Counter(int(e.law_category) for e in self).items())),
            "by_type": {t.value: sum(e.example_type is t for e in self) for t in ExampleType},
            "by_difficulty": {d.value: sum(e.difficulty is d for e in self) for d in Difficulty},
            "by_behavior": {b.value: sum(e.expected_behavior is b for e in self) for b in Behavior},
            "by_split": dict(sorted(Counter(e.split or "unassigned" for e in self).items())),
            "top_tags": dict(Counter(t for e in self for t in e.tags).most_common(20)),
        }

    def content_hash(self) -> str:
        """sha256 of the canonical records: equal content -> equal hash, whatever the order."""
        digest = hashlib.sha256()
        for record in sorted((e.to_record() for e in self), key=lambda r: r["example_id"]):
            digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    # --- splitting ---------------------------------------------------------------------------
    def split(
        self, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
    ) -> "ConstitutionalDataset":
        """Assign train/val/test, stratified by (law, type), reproducibly for ``seed``.

        Within each stratum the examples are shuffled with the seed and cut by largest-remainder
        counts, so every stratum keeps the ratios as closely as whole numbers allow.
        """
        if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {list(ratios)}")
        strata: dict[tuple, list[int]] = defaultdict(list)
        for index, example in enumerate(self.examples):
            strata[(int(example.law_category), example.example_type.value)].append(index)
        assigned: dict[int, str] = {}
        rng = random.Random(seed)
        for key in sorted(strata):
            members = strata[key]
            rng.shuffle(members)
            counts = largest_remainder(len(members), ratios)
            names = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
            for index, name in zip(members, names):
                assigned[index] = name
        return ConstitutionalDataset(
            [_replace(e, split=assigned[i]) for i, e in enumerate(self.examples)]
        )

    def by_split(self, name: str) -> "ConstitutionalDataset":
        return ConstitutionalDataset([e for e in self if e.split == name])

    # --- exports -----------------------------------------------------------------------------
    def alpaca_records(self) -> list[dict[str, Any]]:
        """Alpaca: instruction/input/output, plus earlier turns as ``history`` pairs."""
        records = []
        for e in self:
            dialogue = [t.content for t in e.turns]
            history = [[dialogue[i], dialogue[i + 1]] for i in range(0, len(dialogue) - 1, 2)]
            records.append(
                {
                    "instruction": dialogue[-1],
                    "input": "",
                    "output": e.response_ethical,
                    "system": SYSTEM_PROMPT,
                    "history": history,
                    **_export_metadata(e),
                }
            )
        return records

    def chat_records(self) -> list[dict[str, Any]]:
        return [{"messages": e.messages(), **_export_metadata(e)} for e in self]

    def completion_records(self) -> list[dict[str, Any]]:
        records = []
        for e in self:
            messages = e.messages()
            records.append(
                {
                    "prompt": render_plain_prompt(messages[:-1]),
                    "completion": messages[-1]["content"],
                    **_export_metadata(e),
                }
            )
        return records

    def export_alpaca(self, path: str | Path) -> Path:
        with atomic_open(path) as handle:
            json.dump(self.alpaca_records(), handle, ensure_ascii=False, indent=1)
        return Path(path)

    def export_chat_jsonl(self, path: str | Path) -> Path:
        return _write_jsonl(path, self.chat_records())

    def export_completion_jsonl(self, path: str | Path) -> Path:
        return _write_jsonl(path, self.completion_records())

    # --- tables ------------------------------------------------------------------------------
    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([e.to_record() for e in self], columns=RECORD_COLUMNS)

    @classmethod
    def from_frame(cls, frame) -> "ConstitutionalDataset":
        records = frame.to_dict("records")
        for record in records:
            for key in ("tags", "laws_involved"):
                if record.get(key) is not None and not isinstance(record[key], (list, tuple)):
                    record[key] = list(record[key])
        return cls([ConstitutionalExample.from_record(r) for r in records])


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA: how a NULL comes back from a DataFrame."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return type(value).__name__ in ("NAType", "NaTType")


def _missing_list(value: Any) -> bool:
    return value is None or (not hasattr(value, "__len__") and _missing(value))


def _export_metadata(e: ConstitutionalExample) -> dict[str, Any]:
    return {
        "example_id": e.example_id,
        "example_type": e.example_type.value,
        "law_category": int(e.law_category),
        "difficulty": e.difficulty.value,
        "expected_behavior": e.expected_behavior.value,
        "split": e.split or "",
    }


def _write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    with atomic_open(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False))
            handle.write("\n")
    return Path(path)


def _replace(example: ConstitutionalExample, **changes) -> ConstitutionalExample:
    from dataclasses import replace

    return replace(example, **changes)


def largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into whole counts proportional to ``weights`` that sum exactly to ``total``.

    Each count is within one of ``total * weight``: the closest whole-number apportionment.
    Ties go to the earlier weight, so the result is deterministic.
    """
    if total < 0:
        raise ValueError("total must be >= 0")
    weight_sum = float(sum(weights))
    if weight_sum <= 0:
        raise ValueError("weights must have a positive sum")
    quotas = [total * w / weight_sum for w in weights]
    counts = [int(q) for q in quotas]
    short = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:short]:
        counts[i] += 1
    return counts
