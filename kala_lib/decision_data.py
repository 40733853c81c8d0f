"""Decision rows: prompt -> decision token, the second training stream and the dial's validation set.

Sources, every one decontaminated against the evaluation index (the training mix's):
- every generated example's prompt (all 10,000, not only those the mix drew), under its Law's
  refusal token or ``<|respond|>``; a request's phrasings share a split, the training mix's split
  for requests the mix drew and a hash split for the rest, so validation asks for requests
  training never saw;
- the decision corpus (``ethics_data/decision``): typos, long context, role-play, multi-turn
  escalation, indirect asks, alarming-but-benign prompts; each prompt is its own group, split by
  hash of its id;
- a share of the mix's capability prompts (coding, math, general) from its train split, which
  keep ``<|respond|>`` the default for ordinary work;
- public safety-training prompts (``safety_sources``: StrongREJECT, Do-Not-Answer, CoCoNot, ...)
  when given, each its own group, in the split of its source's slice (whole sources are held out
  for validation); ``public_sources`` keeps only some sources.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from kala_lib.dataset import ConstitutionalExample
from kala_lib.decision import RESPOND, decision_token
from kala_lib.decision_corpus import DecisionPrompt, decision_prompts
from kala_lib.mixing import Decontaminator, MixItem
from kala_lib.safety_sources import SOURCES as PUBLIC_SOURCES
from kala_lib.storage import nullable_int

SPLITS = ("train", "val", "test")


@dataclass
class DecisionRowSettings:
    """What the decision_rows asset draws (its Dagster config is derived from this)."""

    capability_share: float = 0.25  # share of the mix's train capability prompts added as respond rows
    corpus_val_share: float = 0.2  # decision-corpus prompts held out for the dial's validation split
    unassigned_split_ratios: list[float] | None = None  # hash split of requests the mix did not draw (None = the mix's)
    seed: int = 0
    public_sources: list[str] | None = None  # safety_sources kept as training rows (None = all, [] = none); validation's always stay


def hash_split(key: str, ratios: Sequence[float], salt: str = "decision") -> str:
    """A stable split for ``key`` (same key, same split, whatever else is in the data)."""
    value = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:12], 16) / 16**12
    return "train" if value < ratios[0] else "val" if value < ratios[0] + ratios[1] else "test"


def _prompt_messages(messages: Sequence[Mapping[str, str]] | Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    pairs = [(m["role"], m["content"]) if isinstance(m, Mapping) else tuple(m) for m in messages]
    while pairs and pairs[-1][0] == "assistant":
        pairs = pairs[:-1]
    return [{"role": role, "content": content} for role, content in pairs]


def build_decision_rows(
    mix_rows: Sequence[Mapping[str, Any]],
    constitutional_examples: Iterable[Mapping[str, Any]],
    index: Decontaminator,
    system_prompt: str,
    settings: DecisionRowSettings,
    corpus: Sequence[DecisionPrompt] | None = None,
    public: Iterable[Mapping[str, Any]] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(rows, removed): decision rows with their split, and what decontamination dropped. ``public``:
    rows of ``safety_sources`` (the safety_training_prompts table), kept as ``settings.public_sources`` says."""
    if not 0 <= settings.capability_share <= 1 or not 0 <= settings.corpus_val_share < 1:
        raise ValueError(f"capability_share must be in [0, 1] and corpus_val_share in [0, 1), got "
                         f"{settings.capability_share!r} and {settings.corpus_val_share!r}")
    unknown = sorted(set(settings.public_sources or ()) - set(PUBLIC_SOURCES))
    if unknown:
        raise ValueError(f"unknown public_sources {unknown}: use some of {', '.join(PUBLIC_SOURCES)} (null = all)")
    corpus = decision_prompts() if corpus is None else corpus
    mix_split = {row["item_key"]: row["split"] for row in mix_rows}
    ratios = settings.unassigned_split_ratios or _mix_ratios(mix_rows)
    system = [{"role": "system", "content": system_prompt}]
    rows, removed = [], []

    def add(item: MixItem, row: dict[str, Any]) -> None:
        why = index.reason(item)
        if why:
            removed.append({"key": row["key"], "source": row["source"], "reason": why})
        else:
            rows.append(row)

    examples = [ConstitutionalExample.from_record(dict(r)) for r in constitutional_examples]
    group_split: dict[str, str] = {}
    for example in examples:  # the mix's split for a request any of whose phrasings it drew
        key = f"constitutional_examples:{example.example_id}"
        group = f"request:{example.request_key}" if example.request_key else key
        if key in mix_split:
            group_split.setdefault(group, mix_split[key])
    for example in examples:
        key = f"constitutional_examples:{example.example_id}"
        group = f"request:{example.request_key}" if example.request_key else key
        behavior = example.expected_behavior.value
        turns = [(t.role, t.content) for t in example.turns]
        messages = system + _prompt_messages(turns)
        item = MixItem("ethics", "constitutional_examples", example.example_id, tuple((m["role"], m["content"]) for m in messages))
        add(item, {"key": key, "group": group, "split": group_split.get(group) or hash_split(group, ratios),
                   "source": "constitutional_examples", "label": "harmful" if behavior == "refuse" else "benign",
                   "law": int(example.law_category), "style": example.example_type.value,
                   "decision": decision_token(behavior, int(example.law_category)), "messages": messages})
    val_ratios = [1 - settings.corpus_val_share, settings.corpus_val_share, 0.0]
    for prompt in corpus:
        messages = system + _prompt_messages(prompt.messages)
        item = MixItem("ethics", "decision_corpus", prompt.id, tuple((m["role"], m["content"]) for m in messages))
        add(item, {"key": f"decision_corpus:{prompt.id}", "group": f"decision_corpus:{prompt.id}",
                   "split": hash_split(prompt.id, val_ratios), "source": "decision_corpus", "label": prompt.label,
                   "law": prompt.law, "style": prompt.style,
                   "decision": decision_token("refuse" if prompt.harmful else "comply", prompt.law), "messages": messages})
    wanted = None if settings.public_sources is None else set(settings.public_sources)
    for prompt in public:  # public_sources chooses training sources; the held-out validation slice always stays
        if wanted is not None and prompt["source"] not in wanted and prompt["split"] == "train":
            continue
        law = nullable_int(prompt.get("law"))
        messages = system + [{"role": "user", "content": prompt["text"]}]
        item = MixItem("ethics", prompt["source"], prompt["key"], tuple((m["role"], m["content"]) for m in messages))
        add(item, {"key": prompt["key"], "group": prompt["key"], "split": prompt["split"], "source": prompt["source"],
                   "label": prompt["label"], "law": law, "style": prompt["style"],
                   "decision": decision_token("refuse" if prompt["label"] == "harmful" else "comply", law),
                   "messages": messages})
    capability = [r for r in mix_rows if r["split"] == "train" and r["category"] not in ("ethics", "incoming")]
    seen: set[str] = set()
    unique = [r for r in capability if not (r["item_key"] in seen or seen.add(r["item_key"]))]
    rng = random.Random(settings.seed)
    for row in rng.sample(unique, round(settings.capability_share * len(unique))):
        messages = _prompt_messages(json.loads(row["messages"]))
        rows.append({"key": row["item_key"], "group": row["item_key"], "split": "train", "source": row["source"],
                     "label": "capability", "law": None, "style": row["category"], "decision": RESPOND,
                     "messages": messages})
    return rows, removed


def _mix_ratios(mix_rows: Sequence[Mapping[str, Any]]) -> list[float]:
    counts = Counter(r["split"] for r in mix_rows)
    total = sum(counts.values()) or 1
    return [counts[s] / total for s in SPLITS] if counts else [0.9, 0.05, 0.05]


def from_table(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the decision_rows table as build_decision_rows made them (messages parsed from JSON,
    a missing Law as None: the table stores it as a nullable integer)."""
    return [{**record, "messages": json.loads(record["messages"]), "law": nullable_int(record["law"])}
            for record in records]


def decision_records(rows: Iterable[Mapping[str, Any]], split: str) -> list[dict[str, Any]]:
    """One split's rows as the trainer's decision records (JSONL lines)."""
    keep = ("key", "group", "split", "source", "label", "law", "style", "decision", "messages")
    return [{k: row[k] for k in keep} for row in rows if row["split"] == split]


def counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows per split by decision token, by label and by source (for the asset's metadata)."""
    out: dict[str, dict[str, int]] = {}
    for field_name in ("decision", "label", "source"):
        tally = Counter(f"{row['split']}/{row[field_name]}" for row in rows)
        out[field_name] = dict(sorted(tally.items()))
    return out


def overlap_groups(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Groups (requests) found in more than one split: must be empty."""
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(row["group"], set()).add(row["split"])
    return sorted(g for g, s in splits.items() if len(s) > 1)


def messages_text(messages: Sequence[Mapping[str, str]]) -> str:
    return json.dumps(list(messages), ensure_ascii=False)
