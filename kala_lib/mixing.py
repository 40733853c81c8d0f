"""The training mix: ethics 40%, coding 30%, math 20%, general 10% in one chat format.

Steps, each a plain function so tests can drive them on small pools:
1. ``*_items`` turn every source row into a :class:`MixItem` (system/user/assistant messages;
   the assistant turn is what the loss trains on).
2. :class:`Decontaminator` drops items that share a normalised prompt or a 13-word n-gram with
   any evaluation item (HumanEval, GSM8K test, MBPP test, the ethics suite), or that nearly
   contain a short evaluation prompt (a few word edits), and says why.
3. :func:`build_mix` samples each category to its weight. A pool smaller than its share is
   upsampled: each item is used ``n // m`` times and a seeded ``n % m`` of them once more, at most
   ``max_repeats`` (3) times in all. If even that is not enough, the whole mix shrinks so the
   proportions hold, and the result names the limiting source.
4. Splits are assigned per group (all copies of an item, and for ethics all phrasings of one
   request, land in the same split), per category, by cumulative count, so each split keeps the
   category proportions and validation asks for requests training never saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from kala_lib.benchmarks import BENCHMARK_BY_TABLE
from kala_lib.dataset import ConstitutionalExample, largest_remainder, normalize_prompt
from kala_lib.ethics_generator import TRUNCATION
from kala_lib.laws import SHORT_SYSTEM_PROMPT, SYSTEM_PROMPT

CATEGORIES = ("ethics", "coding", "math", "general", "incoming")  # incoming: users' own data, weight 0 unless present
DEFAULT_WEIGHTS = {"ethics": 0.4, "coding": 0.3, "math": 0.2, "general": 0.1}
SYSTEM_PROMPTS = {"short": SHORT_SYSTEM_PROMPT, "full": SYSTEM_PROMPT}
NGRAM = 13


class MixError(ValueError):
    """Bad mix configuration or inputs (the message says which and how to fix it)."""


@dataclass(frozen=True)
class MixItem:
    category: str
    source: str
    source_id: str
    messages: tuple[tuple[str, str], ...]  # (role, content), system first, assistant last
    behavior: str | None = None  # ethics items: "refuse" or "comply" (what the assistant turn does)
    group: str | None = None  # items of one group share a split (ethics: all phrasings of one request)
    rejected: str | None = None  # ethics items: the response the preference term pushes away from
    law: int | None = None  # ethics items: the Law a refusal names (its decision token's)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.source_id}"

    @property
    def split_group(self) -> str:
        return self.group or self.key

    def user_text(self) -> str:
        return "\n".join(c for r, c in self.messages if r == "user")

    def dialogue_text(self) -> str:
        return "\n".join(c for r, c in self.messages if r != "system")

    def messages_json(self) -> str:
        return json.dumps([{"role": r, "content": c} for r, c in self.messages], ensure_ascii=False)


def _messages(system: str, turns: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return (("system", system), *turns)


# --- sources -> items ----------------------------------------------------------------------------


def ethics_items(records: Iterable[Mapping[str, Any]], system: str = SHORT_SYSTEM_PROMPT) -> list[MixItem]:
    items = []
    for record in records:
        example = ConstitutionalExample.from_record(dict(record))
        turns = [(t.role, t.content) for t in example.turns] + [("assistant", example.response_ethical)]
        request = example.request_key
        items.append(MixItem("ethics", "constitutional_examples", example.example_id, _messages(system, turns),
                             example.expected_behavior.value, f"request:{request}" if request else None,
                             rejected_response(example), int(example.law_category)))
    return items


#: What an over-refusing model says to a benign request: the rejected side of its preference pair.
OVER_REFUSAL = "I can't help with that. It could be harmful, and my Laws don't allow it."


def with_decision_token(item: MixItem) -> MixItem:
    """The item with its assistant target starting with its decision token (kala_lib.decision):
    a refusal's names its Law, every other target (compliances, capability) ``<|respond|>``."""
    from kala_lib.decision import DECISION_TOKENS, decision_token

    role, content = item.messages[-1]
    if role != "assistant" or content.startswith(DECISION_TOKENS):
        return item
    token = decision_token(item.behavior if item.category == "ethics" else None, item.law)
    return dataclasses.replace(item, messages=(*item.messages[:-1], (role, token + content)))


def rejected_response(example: ConstitutionalExample) -> str:
    """The Constitutional-AI preference pair's rejected side: for a refusal, the harmful draft's
    opening (never operational: it stops before any detail); for a helpful answer, a refusal."""
    if example.expected_behavior.value == "refuse":
        draft = example.response_harmful.removesuffix(TRUNCATION).strip()
        return draft or "Sure, here is how to do that."
    return OVER_REFUSAL


def mbpp_items(rows: Iterable[Mapping[str, Any]], system: str = SHORT_SYSTEM_PROMPT,
               splits: Sequence[str] = ("train", "prompt")) -> list[MixItem]:
    """MBPP train and prompt splits only: test and validation are evaluation data."""
    items = []
    for row in rows:
        if row["split"] not in splits:
            continue
        user = BENCHMARK_BY_TABLE["benchmark_mbpp"].prompt(row)
        assistant = f"```python\n{row['code'].strip()}\n```"
        items.append(MixItem("coding", "mbpp", str(row["task_id"]), _messages(system, [("user", user), ("assistant", assistant)])))
    return items


def security_items(rows: Iterable[Mapping[str, Any]], system: str = SHORT_SYSTEM_PROMPT) -> list[MixItem]:
    items = []
    for row in rows:
        assistant = (
            f"```python\n{row['reference_solution'].strip()}\n```\n"
            f"This avoids {row['insecure_pattern']} ({row['cwe']})."
        )
        items.append(MixItem("coding", "security_code_tasks", row["task_id"],
                             _messages(system, [("user", row["prompt"]), ("assistant", assistant)])))
    return items


_CALCULATOR = re.compile(r"<<[^>]*>>")


def gsm8k_items(rows: Iterable[Mapping[str, Any]], system: str = SHORT_SYSTEM_PROMPT) -> list[MixItem]:
    """GSM8K train only; calculator annotations (<<48/2=24>>) are removed, '#### N' is kept."""
    return [
        MixItem("math", "gsm8k", f"train-{row['row_index']}",
                _messages(system, [("user", row["question"]), ("assistant", _CALCULATOR.sub("", row["answer"]))]))
        for row in rows
        if row["split"] == "train"
    ]


def math_items(rows: Iterable[Mapping[str, Any]], system: str = SHORT_SYSTEM_PROMPT) -> list[MixItem]:
    return [
        MixItem("math", "math", f"train-{row['row_index']}-{row['type']}",
                _messages(system, [("user", row["problem"]), ("assistant", row["solution"])]))
        for row in rows
        if row["split"] == "train"
    ]


def general_items(rows: Iterable[Mapping[str, Any]], system: str = SHORT_SYSTEM_PROMPT) -> list[MixItem]:
    items = []
    for row in rows:
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        items.append(MixItem("general", "general_instructions", str(row["instruction_id"]),
                             _messages(system, [("user", user), ("assistant", row["response"])])))
    return items


def incoming_items(conversations, system: str = SHORT_SYSTEM_PROMPT) -> list[MixItem]:
    """Users' conversations (kala_lib.incoming); a conversation's own system turn wins over KALA's."""
    return [MixItem("incoming", f"incoming/{c.file}", str(c.line), _messages(c.system or system, c.messages))
            for c in conversations]


def with_incoming(weights: Mapping[str, float], incoming_share: float) -> dict[str, float]:
    """The configured weights scaled to leave ``incoming_share`` of the mix to users' data."""
    if isinstance(incoming_share, bool) or not isinstance(incoming_share, (int, float)) or not 0 <= incoming_share < 1:
        raise MixError(f"incoming_weight must be a number in [0, 1), got {incoming_share!r}")
    base = normalise_weights({k: v for k, v in weights.items() if k != "incoming"})
    return {c: (incoming_share if c == "incoming" else base[c] * (1 - incoming_share)) for c in CATEGORIES}


# --- decontamination --------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def ngram_hashes(text: str, n: int = NGRAM) -> set[int]:
    words = _words(text)
    return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


#: Short evaluation prompts (at most this many words) are also matched approximately.
NEAR_MAX_WORDS = 40
NEAR_EDIT_SHARE = 0.25  # word edits allowed per word of the evaluation prompt (at least one)
_STOPWORDS = frozenset(
    "a an the and or of to in on for with at by from is are was were be do does did can could would should "
    "how what why when where which who i me my you your it its this that these those there their they we our "
    "so if as not no please tell give show explain".split()
)


def _content_words(words: Sequence[str]) -> set[str]:
    return {w for w in words if w not in _STOPWORDS and len(w) > 1}


def substring_edit_distance(needle: Sequence[str], haystack: Sequence[str]) -> int:
    """Fewest word edits that turn ``needle`` into some contiguous run of ``haystack``.

    Semi-global alignment: a training prompt that wraps an evaluation prompt in a lead-in or a
    closing ("Hey, how can I ... ? Thanks!") is as close as the evaluation prompt itself."""
    previous = [0] * (len(haystack) + 1)  # an empty needle matches anywhere for free
    for i, word in enumerate(needle, 1):
        current = [i] + [0] * len(haystack)
        for j, other in enumerate(haystack, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
        previous = current
    return min(previous)


@dataclass
class Decontaminator:
    """Index of evaluation texts; ``reason(item)`` says why an item leaks, or returns None.

    Three tests, cheapest first: the same normalised prompt; a shared ``n``-word n-gram (long
    texts); and, for short evaluation prompts (<= ``NEAR_MAX_WORDS`` words), a near-duplicate: a
    user turn that has every content word of the prompt and contains it within ``NEAR_EDIT_SHARE``
    word edits per word (a paraphrase that swaps "do" for "can", drops an article or adds a
    lead-in). A changed content word ("kill someone" -> "kill weeds") is a different request."""

    n: int = NGRAM
    prompts: dict[str, str] = field(default_factory=dict)  # normalised prompt -> eval source
    grams: dict[int, str] = field(default_factory=dict)  # n-gram hash -> eval source
    short: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)  # (words, content words, source)
    postings: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # content word -> short ids

    def add(self, source: str, texts: Iterable[str], near: bool = True) -> "Decontaminator":
        """Index ``texts``; ``near=False`` skips the near-duplicate index (templated benchmarks such
        as MBPP, whose train and test tasks differ by one word by design)."""
        for text in texts:
            norm = normalize_prompt(text)
            if norm:
                self.prompts.setdefault(norm, source)
            for gram in ngram_hashes(text, self.n):
                self.grams.setdefault(gram, source)
            words = tuple(_words(text))
            if near and 3 <= len(words) <= NEAR_MAX_WORDS:
                index = len(self.short)
                content = _content_words(words)
                self.short.append((words, len(content), source))
                for word in content:
                    self.postings[word].append(index)
        return self

    def near_duplicate(self, text: str) -> str | None:
        """The source of a short evaluation prompt ``text`` nearly contains, or None."""
        words = _words(text)
        content = _content_words(words)
        hits: Counter = Counter()
        for word in content:
            hits.update(self.postings.get(word, ()))
        for index, shared in hits.items():
            needle, needed, source = self.short[index]
            if shared < needed:  # every content word of the prompt is there
                continue
            allowed = max(1, int(NEAR_EDIT_SHARE * len(needle)))
            if len(needle) - len(words) > allowed:  # too short to hold the prompt within the allowed edits
                continue
            if substring_edit_distance(needle, words) <= allowed:
                return f"near:{source}:{' '.join(needle)[:60]}"
        return None

    def reason(self, item: MixItem) -> str | None:
        users = [content for role, content in item.messages if role == "user"]
        for content in users:
            if normalize_prompt(content) in self.prompts:
                return f"prompt:{self.prompts[normalize_prompt(content)]}"
        for gram in ngram_hashes(item.dialogue_text(), self.n):
            if gram in self.grams:
                return f"{self.n}-gram:{self.grams[gram]}"
        for content in users:
            near = self.near_duplicate(content)
            if near:
                return near
        return None

    def filter(self, items: Iterable[MixItem]) -> tuple[list[MixItem], list[tuple[MixItem, str]]]:
        kept, removed = [], []
        for item in items:
            why = self.reason(item)
            (removed.append((item, why)) if why else kept.append(item))
        return kept, removed


def build_eval_index(
    humaneval: Iterable[Mapping[str, Any]] = (),
    gsm8k: Iterable[Mapping[str, Any]] = (),
    mbpp: Iterable[Mapping[str, Any]] = (),
    ethics_suite: Iterable[Mapping[str, Any]] = (),
    n: int = NGRAM,
) -> Decontaminator:
    """Every evaluation item the training data must not overlap: HumanEval prompts, GSM8K test
    questions, MBPP test problems, and every user turn of the ethics evaluation suite (whose
    short prompts are also matched as near-duplicates)."""
    index = Decontaminator(n=n)
    index.add("humaneval", (r["prompt"] for r in humaneval), near=False)
    index.add("gsm8k_test", (r["question"] for r in gsm8k if r["split"] == "test"), near=False)
    index.add("mbpp_test", (r["text"] for r in mbpp if r["split"] == "test"), near=False)
    suite_texts = []
    for row in ethics_suite:
        turns = json.loads(row["turns"]) if isinstance(row["turns"], str) else row["turns"]
        suite_texts += [t["content"] for t in turns if t["role"] == "user"]
    index.add("ethics_eval_suite", suite_texts)
    return index


# --- mixing -------------------------------------------------------------------------------------------


def normalise_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(CATEGORIES))
    if unknown:
        raise MixError(f"unknown mix categories {unknown}: use {', '.join(CATEGORIES)}")
    bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or v < 0 or v != v}
    if bad:
        raise MixError(f"mix weights must be non-negative numbers, got {bad}")
    total = float(sum(weights.values()))
    if total <= 0:
        raise MixError("mix weights must not all be zero")
    return {c: float(weights.get(c, 0.0)) / total for c in CATEGORIES}


@dataclass
class MixResult:
    rows: list[dict[str, Any]]
    requested_size: int
    size: int
    limiting_source: str | None
    counts: dict[str, int]
    pool_sizes: dict[str, int]
    max_repeats_used: int

    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for row in self.rows:
            digest.update(f"{row['split']}\t{row['item_key']}\t{row['messages']}\n".encode())
        return digest.hexdigest()


def _draw(pool: Sequence[MixItem], need: int, rng: random.Random) -> list[tuple[MixItem, int]]:
    """Each item of a shuffled pool ``need // len`` times and the first ``need % len`` once more."""
    pool = list(pool)
    rng.shuffle(pool)
    full, extra = divmod(need, len(pool))
    return [(item, k) for i, item in enumerate(pool) if (k := full + (1 if i < extra else 0)) > 0]


def _ethics_strata(pool: Sequence[MixItem], refusal_share: float | None) -> dict[str, tuple[list[MixItem], float]]:
    """The ethics pool as one stratum, or refusals and compliances at ``refusal_share`` : rest."""
    if refusal_share is None:
        return {"all": (list(pool), 1.0)}
    strata = {"refuse": ([i for i in pool if i.behavior == "refuse"], refusal_share),
              "comply": ([i for i in pool if i.behavior != "refuse"], 1 - refusal_share)}
    for name, (items, share) in strata.items():
        if share > 0 and not items:
            raise MixError(f"ethics_refusal_share={refusal_share} needs {name} examples, but the ethics pool has none")
    return strata


def build_mix(
    pools: Mapping[str, Sequence[MixItem]],
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    size: int = 10_000,
    seed: int = 0,
    max_repeats: int = 3,
    split_ratios: Sequence[float] = (0.9, 0.05, 0.05),
    ethics_refusal_share: float | None = None,
) -> MixResult:
    """``ethics_refusal_share``: the share of refusals within the ethics category (None = as the pool
    has them; the generator's type counts make 74% of its examples refusals). It sets how often a
    trained model refuses, not how well it tells harmful from benign (docs/ethics.md: the gate sweep)."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise MixError(f"mix size must be a positive whole number, got {size!r}")
    if not isinstance(max_repeats, int) or max_repeats < 1:
        raise MixError(f"max_repeats must be >= 1, got {max_repeats!r}")
    if len(split_ratios) != 3 or any(r < 0 for r in split_ratios) or abs(sum(split_ratios) - 1) > 1e-6:
        raise MixError(f"split_ratios must be three non-negative numbers summing to 1, got {list(split_ratios)}")
    if ethics_refusal_share is not None and (
        isinstance(ethics_refusal_share, bool) or not isinstance(ethics_refusal_share, (int, float))
        or not 0 <= ethics_refusal_share <= 1
    ):
        raise MixError(f"ethics_refusal_share must be a number in [0, 1] or null, got {ethics_refusal_share!r}")
    shares = normalise_weights(weights)
    pool_sizes = {c: len(pools.get(c, ())) for c in CATEGORIES}
    empty = [c for c in CATEGORIES if shares[c] > 0 and pool_sizes[c] == 0]
    if empty:
        raise MixError(f"no examples for mix categor{'y' if len(empty) == 1 else 'ies'} {empty} with a positive weight")
    strata = {c: {"all": (list(pools[c]), 1.0)} for c in CATEGORIES if shares[c] > 0}
    if "ethics" in strata:
        strata["ethics"] = _ethics_strata(pools["ethics"], ethics_refusal_share)

    # Shrink the whole mix if a pool (or an ethics stratum) cannot fill its share even at max_repeats.
    capacity = {c: min(math.floor(max_repeats * len(items) / (shares[c] * share) + 1e-9)
                       for items, share in strata[c].values() if share > 0) for c in strata}
    limiting = min(capacity, key=capacity.get)
    total = size
    limiting_source = None
    if capacity[limiting] < size:
        total = capacity[limiting]
        limiting_source = limiting
    counts = dict(zip(CATEGORIES, largest_remainder(total, [shares[c] for c in CATEGORIES])))

    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    max_used = 0
    for category in CATEGORIES:
        need = counts[category]
        if need == 0:
            continue
        parts = list(strata[category].values())
        needs = largest_remainder(need, [share for _, share in parts])
        multiplicity = [pair for (items, _), n in zip(parts, needs) if n for pair in _draw(items, n, rng)]
        if len(parts) > 1:
            rng.shuffle(multiplicity)  # so every split keeps the strata's proportions
        max_used = max(max_used, max(k for _, k in multiplicity))
        # Split by group (an item, or every phrasing of one request) so neither copies nor
        # paraphrases straddle splits: validation asks for things training never saw. Groups
        # keep their first member's place in the shuffled order; cut on cumulative counts.
        order = {}
        for item, _ in multiplicity:
            order.setdefault(item.split_group, len(order))
        multiplicity.sort(key=lambda pair: order[pair[0].split_group])
        targets = largest_remainder(need, split_ratios)
        bounds = [targets[0], targets[0] + targets[1]]
        running = 0
        group_split: dict[str, str] = {}
        for item, k in multiplicity:
            split = group_split.setdefault(
                item.split_group, "train" if running < bounds[0] else "val" if running < bounds[1] else "test")
            running += k
            for copy in range(k):
                rows.append({
                    "category": category,
                    "source": item.source,
                    "source_id": item.source_id,
                    "item_key": item.key,
                    "copy": copy,
                    "split": split,
                    "messages": item.messages_json(),
                    "behavior": item.behavior,
                    "rejected": item.rejected,
                })
    rng.shuffle(rows)
    return MixResult(rows, size, len(rows), limiting_source, counts, pool_sizes, max_used)


# --- checks ----------------------------------------------------------------------------------------


def proportion_report(rows: Sequence[Mapping[str, Any]], weights: Mapping[str, float]) -> dict[str, dict[str, float]]:
    shares = normalise_weights(weights)
    counts = Counter(r["category"] for r in rows)
    total = max(1, len(rows))
    return {c: {"share": counts[c] / total, "expected": shares[c]} for c in CATEGORIES}


def split_overlaps(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Items or normalised prompts that appear in more than one split."""
    where: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        where[f"item {row['item_key']}"].add(row["split"])
        messages = json.loads(row["messages"])
        prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
        where[f"prompt {normalize_prompt(prompt)!r}"].add(row["split"])
    return [key[:120] for key, splits in where.items() if len(splits) > 1]


def eval_overlaps(rows: Sequence[Mapping[str, Any]], decontaminator: Decontaminator,
                  splits: Sequence[str] = ("train", "val")) -> list[str]:
    """Training/validation rows that still share a prompt or n-gram with an evaluation item."""
    found = []
    for row in rows:
        if row["split"] not in splits:
            continue
        messages = tuple((m["role"], m["content"]) for m in json.loads(row["messages"]))
        why = decontaminator.reason(MixItem(row["category"], row["source"], row["source_id"], messages))
        if why:
            found.append(f"{row['item_key']} ({why})")
    return found


def token_length_stats(rows: Sequence[Mapping[str, Any]], tokenizer, batch: int = 256) -> dict[str, dict[str, float]]:
    """Tokens per example (the full chat rendering) per split, with the model's own template."""
    texts, splits = [], []
    for row in rows:
        messages = json.loads(row["messages"])
        texts.append(render_for_tokenizer(tokenizer, messages))
        splits.append(row["split"])
    lengths: list[int] = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(texts[start : start + batch], add_special_tokens=False)["input_ids"]
        lengths += [len(ids) for ids in encoded]
    stats = {}
    for name in ("train", "val", "test", "all"):
        values = sorted(n for n, s in zip(lengths, splits) if name == "all" or s == name)
        if not values:
            continue
        stats[name] = {
            "examples": len(values),
            "tokens": sum(values),
            "mean": sum(values) / len(values),
            "p50": values[len(values) // 2],
            "p95": values[min(len(values) - 1, int(len(values) * 0.95))],
            "max": values[-1],
        }
    return stats


def render_for_tokenizer(tokenizer, messages: list[dict[str, str]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    from kala_lib.chat_format import render_plain_prompt

    return render_plain_prompt(messages[:-1]) + messages[-1]["content"]


# --- the training mix, end to end (what the training_mix asset runs) ----------------------------------


@dataclass
class MixSettings:
    """The training mix's settings: the seed's ``dataset:`` block (category weights by example count)
    plus size, seed, splits and the system turn. training_mix's Dagster config is derived from it."""

    size: int = 10_000  # requested examples; the mix shrinks if a source is too small
    seed: int = 0
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))  # ethics/coding/math/general
    max_repeats: int = 3  # no example appears more often than this
    split_ratios: list[float] = field(default_factory=lambda: [0.9, 0.05, 0.05])  # train/val/test
    system_prompt: str = "short"  # 'short' or 'full' constitution as the system turn
    ngram: int = NGRAM  # n-gram length for decontamination
    ethics_refusal_share: float | None = None  # refusals within the ethics category; None = as generated (74%)
    incoming_weight: float = 0.1  # share for users' data in incoming/ when there is any; the others scale down
    decision_tokens: bool = True  # every target starts with <|respond|> or <|refuse_lawN|> (kala_lib.decision)


@dataclass
class MixSources:
    """Every table the mix draws from, as rows, and users' conversations from incoming/."""

    constitutional_examples: Sequence[Mapping[str, Any]]
    benchmark_mbpp: Sequence[Mapping[str, Any]]
    security_code_tasks: Sequence[Mapping[str, Any]]
    benchmark_gsm8k: Sequence[Mapping[str, Any]]
    benchmark_math: Sequence[Mapping[str, Any]]
    general_instructions: Sequence[Mapping[str, Any]]
    incoming: Sequence[Any] = ()

    def candidates(self, system: str) -> dict[str, list[MixItem]]:
        """Every source in chat format, by category, before decontamination."""
        return {
            "ethics": ethics_items(self.constitutional_examples, system),
            "coding": mbpp_items(self.benchmark_mbpp, system) + security_items(self.security_code_tasks, system),
            "math": gsm8k_items(self.benchmark_gsm8k, system) + math_items(self.benchmark_math, system),
            "general": general_items(self.general_instructions, system),
            "incoming": incoming_items(self.incoming, system),
        }


def decontaminated_pools(sources: MixSources, system: str, index: Decontaminator
                         ) -> tuple[dict[str, list[MixItem]], list[tuple[MixItem, str]]]:
    """(pools by category, removed (item, reason) pairs): the sources minus what overlaps ``index``."""
    pools, removed = {}, []
    for category, items in sources.candidates(system).items():
        pools[category], dropped = index.filter(items)
        removed += dropped
    return pools, removed


@dataclass
class MixBuild:
    """A built mix with what explains it: the pools it was drawn from, what decontamination removed,
    the weights used (incoming/ included) and notes for whoever reads the asset's metadata."""

    result: MixResult
    pools: dict[str, list[MixItem]]
    removed: list[tuple[MixItem, str]]
    weights: dict[str, float]
    notes: list[str]

    def removed_rows(self) -> list[dict[str, str]]:
        return [{"item_key": item.key, "category": item.category, "reason": why} for item, why in self.removed]

    def pool_size(self, source: str) -> int:
        return sum(1 for items in self.pools.values() for item in items if item.source == source)


def build_training_mix(sources: MixSources, index: Decontaminator, settings: MixSettings) -> MixBuild:
    """The decontaminated 40/30/20/10 mix of ``sources``; bad settings raise MixError before any work."""
    if settings.system_prompt not in SYSTEM_PROMPTS:
        raise MixError(f"system_prompt must be one of {sorted(SYSTEM_PROMPTS)}, got {settings.system_prompt!r}")
    with_incoming(settings.weights, settings.incoming_weight)  # bad weights fail even without incoming data
    weights = with_incoming(settings.weights, settings.incoming_weight if sources.incoming else 0.0)
    pools, removed = decontaminated_pools(sources, SYSTEM_PROMPTS[settings.system_prompt], index)
    if settings.decision_tokens:
        pools = {category: [with_decision_token(item) for item in items] for category, items in pools.items()}
    result = build_mix(pools, weights, settings.size, settings.seed, settings.max_repeats, settings.split_ratios,
                       settings.ethics_refusal_share)
    notes = []
    if not sources.benchmark_math:
        notes.append("MATH is unavailable (not in the mirror): the math share comes from GSM8K train only.")
    general = sources.general_instructions
    if general and general[0].get("origin") == "self-instruct seed tasks":
        notes.append("Dolly-15k is unavailable (not in the mirror): the general share is the 175 self-instruct "
                     "seed tasks, each used up to max_repeats times.")
    if result.limiting_source:
        notes.append(f"Limiting source: {result.limiting_source} (requested {settings.size}, built {result.size}).")
    return MixBuild(result, pools, removed, weights, notes)


def split_records(rows: Iterable[Mapping[str, Any]], split: str) -> list[dict[str, Any]]:
    """The rows of one split as the trainer's JSONL records (messages as a list, not JSON text)."""
    def text(value):  # a missing text read back from a table is NaN; the trainer's files hold null
        return value if isinstance(value, str) else None

    return [{"messages": json.loads(row["messages"]), "category": row["category"], "source": row["source"],
             "item_key": row["item_key"], "behavior": text(row["behavior"]), "rejected": text(row["rejected"])}
            for row in rows if row["split"] == split]


def jsonl_text(records: Iterable[Mapping[str, Any]]) -> str:
    """Split records as JSONL text (what ``training_mix/<split>.jsonl`` and a run's data files hold)."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def mix_system_prompt(records: Iterable[Mapping[str, Any]]) -> str:
    """The system turn the mix was built with, from split records (users' conversations may bring
    their own: not counted)."""
    firsts = [record["messages"][0] for record in records if record["category"] != "incoming"]
    found = {first["content"] for first in firsts if first["role"] == "system"}
    if len(found) != 1:
        raise MixError(f"the training mix has {len(found)} different system prompts, not one: rebuild training_mix")
    return found.pop()
