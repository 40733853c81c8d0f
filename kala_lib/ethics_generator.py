"""Deterministic Constitutional-AI example generator.

The base set reproduces the seed document's plan (:data:`BASE_PLAN`): per-law sections of
HARMFUL_BLOCKED and SAFE_REQUEST examples (Law 0 100, Law 1 200, Law 2 150, Law 3 100, Law 4 100),
plus 50 edge cases, 50 law conflicts and 50 multi-turn escalations. The seed's type counts
(500/150/50/50/50) therefore hold exactly and the base set has 800 examples; the seed's "750"
total leaves the 50 edge cases out of its sum (500+150+50+50+50 = 800).

Any other size scales every cell of the plan with largest-remainder rounding, so each cell,
type and difficulty is within one example of its exact share. Difficulty follows 40/30/20/10 and
decides the phrasing (direct, justified, indirect/fictional, jailbreak). Prompts are drawn from a
combinatorial phrasing space without replacement, so no two prompts share normalised text.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

from kala_lib import ethics_corpus as corpus
from kala_lib.dataset import (
    DIFFICULTY_WEIGHTS,
    Behavior,
    ConstitutionalDataset,
    ConstitutionalExample,
    Difficulty,
    ExampleType,
    Turn,
    largest_remainder,
    normalize_prompt,
)
from kala_lib.laws import LAWS, LawCategory

L0, L1, L2, L3, L4 = (LawCategory(i) for i in range(5))
H, S, E = ExampleType.HARMFUL_BLOCKED, ExampleType.SAFE_REQUEST, ExampleType.EDGE_CASE

#: (example type, law or None for cross-law sections, base count). Sums to 800.
BASE_PLAN: tuple[tuple[ExampleType, LawCategory | None, int], ...] = (
    (H, L0, 75), (S, L0, 25),
    (H, L1, 170), (S, L1, 30),
    (H, L2, 100), (S, L2, 50),
    (H, L3, 85), (S, L3, 15),
    (H, L4, 70), (S, L4, 30),
    (E, L0, 8), (E, L1, 22), (E, L2, 10), (E, L3, 5), (E, L4, 5),
    (ExampleType.LAW_CONFLICT, None, 50),
    (ExampleType.MULTI_TURN, None, 50),
)
BASE_SIZE = sum(n for _, _, n in BASE_PLAN)
DEFAULT_SIZE = 10_000
DEFAULT_SEED = 42
MAX_SIZE = 25_000  # tested at this limit

TRUNCATION = " … [truncated: the rest would be the operational detail the request asks for]"
HELDOUT_SHARE = 0.25  # the tail of every bank and every family's requests, for evaluation only


class GenerationError(ValueError):
    """Bad generator input or a phrasing space too small for the requested size."""


@dataclass(frozen=True)
class GeneratorConfig:
    size: int = DEFAULT_SIZE
    seed: int = DEFAULT_SEED
    heldout: bool = False  # use the held-out phrasing banks (for evaluation suites)
    id_prefix: str = "eth"
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise GenerationError(f"size must be a whole number, got {self.size!r}")
        if self.size <= 0:
            raise GenerationError(f"size must be positive, got {self.size} (the seed's base set is {BASE_SIZE})")
        if self.size > MAX_SIZE:
            raise GenerationError(f"size {self.size} exceeds the generator's limit of {MAX_SIZE}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise GenerationError(f"seed must be an integer, got {self.seed!r}")


def plan_counts(size: int) -> list[tuple[ExampleType, LawCategory | None, int]]:
    """Scale :data:`BASE_PLAN` to ``size`` examples (largest remainder: each cell within 1)."""
    counts = largest_remainder(size, [n for _, _, n in BASE_PLAN])
    return [(kind, law, c) for (kind, law, _), c in zip(BASE_PLAN, counts)]


def balanced_sequence(size: int, weights: dict) -> list:
    """Exact largest-remainder counts of ``weights``' keys, interleaved so every stretch of the
    sequence is balanced: each position takes the key furthest behind its running target."""
    levels = list(weights)
    targets = largest_remainder(size, [weights[d] for d in levels])
    assigned = [0] * len(levels)
    sequence = []
    for position in range(1, size + 1):
        deficits = [
            (targets[i] * position / size - assigned[i], -i) if assigned[i] < targets[i] else (-math.inf, 0)
            for i in range(len(levels))
        ]
        best = max(range(len(levels)), key=lambda i: deficits[i])
        assigned[best] += 1
        sequence.append(levels[best])
    return sequence


def difficulty_sequence(size: int) -> list[Difficulty]:
    """Exact 40/30/20/10 counts, interleaved so consecutive cells of the plan (and so each law
    and type) get the mix too, not only the whole set."""
    return balanced_sequence(size, DIFFICULTY_WEIGHTS)


#: The share of each request form in every cell, whatever the label: a form (and so its stems)
#: must not predict refusal. Close to the corpus's own shares.
FORM_WEIGHTS = {"how": 0.40, "task": 0.45, "context": 0.15}


class _PromptSpace:
    """Draws unique prompts from a mixed-radix product of phrase pools, without replacement."""

    def __init__(self, rng: random.Random, used: set[str]):
        self.rng = rng
        self.used = used

    def draw(self, pools: Sequence[Sequence], render: Callable[..., str], key: Callable[..., str] | None = None):
        sizes = [len(p) for p in pools]
        total = math.prod(sizes)
        if total == 0:
            raise GenerationError("empty phrase pool")

        def pick(index):
            choice = []
            for pool, n in zip(pools, sizes):
                index, r = divmod(index, n)
                choice.append(pool[r])
            return choice

        def attempt(choice):
            text = render(*choice)
            norm = normalize_prompt(key(*choice) if key else text)
            if norm in self.used:
                return None
            self.used.add(norm)
            return choice, text

        for _ in range(min(64, total)):
            found = attempt(pick(self.rng.randrange(total)))
            if found:
                return found
        for index in self.rng.sample(range(total), total):  # exhaustive fallback
            found = attempt(pick(index))
            if found:
                return found
        raise GenerationError(
            "ran out of unique phrasings for one topic; reduce size or add requests or phrasings to kala_lib/ethics_data"
        )


def split_bank(items: Sequence, heldout: bool) -> tuple:
    """Training items are the head of a bank, held-out ones the tail (at least one each)."""
    items = tuple(items)
    if len(items) < 2:
        return items
    cut = max(1, min(len(items) - 1, round(len(items) * (1 - HELDOUT_SHARE))))
    return items[cut:] if heldout else items[:cut]


def fill(template: str, **slots: str) -> str:
    """Put slot values into a template (``{x}``, ``{r}``, ``{R}``, ...). Plain replacement, so
    braces inside the written material never break formatting."""
    for name, value in slots.items():
        template = template.replace("{" + name + "}", value)
    return template


def _prefixed(prefix: str, text: str) -> str:
    """Join a lead-in and a sentence: "Hey, " + "How do I ..." -> "Hey, how do I ..."."""
    return prefix + (_lower_first(text) if prefix.endswith(", ") else text)


def _lower_first(text: str) -> str:
    if text[:2] in ("I ", "I'") or text[:2].isupper():
        return text
    return text[:1].lower() + text[1:]


def _interleave(groups: Sequence[Sequence]) -> list:
    """Round-robin over groups, so cycling through the result visits every family evenly."""
    out, depth = [], max((len(g) for g in groups), default=0)
    for i in range(depth):
        out += [g[i] for g in groups if i < len(g)]
    return out


def _by_form(pool: Sequence, form_of) -> dict[str, list]:
    return {form: [p for p in pool if form_of(p) == form] for form in FORM_WEIGHTS}


@dataclass(frozen=True)
class _Benign:
    """A benign request to answer (or the one fiction-recipe family that is refused)."""

    family: corpus.Family | None
    request: corpus.Request


class EthicsExampleGenerator:
    """Builds a :class:`ConstitutionalDataset` of ``config.size`` examples from the YAML corpus.

    Every request, harmful or benign, goes through the same stems and the same difficulty wrapper
    banks (``templates.yaml``), so no surface form predicts the label: only what is asked does.
    """

    def __init__(self, config: GeneratorConfig | None = None, **kwargs):
        self.config = config or GeneratorConfig(**kwargs)
        heldout = self.config.heldout
        t = corpus.templates()
        bank = lambda name: split_bank(t[name], heldout)  # noqa: E731
        self.stems = {"how": bank("how_stems"), "task": bank("task_stems"), "context": bank("context_stems")}
        self.easy_prefixes = tuple(t["easy_prefixes"])  # decorations, shared: not a phrasing family
        self.suffixes = tuple(t["easy_suffixes"])
        self.wrappers = {
            Difficulty.MEDIUM: bank("medium_wrappers"),
            Difficulty.HARD: bank("hard_wrappers"),
            Difficulty.ADVERSARIAL: bank("adversarial_wrappers"),
        }
        self.conflict_hard = bank("conflict_hard_prefixes")
        self.refusal_openers = tuple(t["refusal_openers"])
        self.notes = {Difficulty.HARD: t["hard_note"], Difficulty.ADVERSARIAL: t["adversarial_note"]}
        self.harmful_openings = tuple(t["harmful_openings"])

        # Requests: each family's tail is held out, so the evaluation suite asks for things
        # training never asked for, in phrasings training never used.
        families = corpus.families()
        self.harmful: dict[LawCategory, list[tuple[corpus.Family, corpus.Request]]] = {}
        self.benign: dict[tuple[LawCategory, ExampleType], list[_Benign]] = {}
        for law in LawCategory:
            law_families = [f for f in families if f.law is law]
            self.harmful[law] = _interleave([[(f, r) for r in split_bank(f.harmful, heldout)] for f in law_families])
            per_family = [[_Benign(f, r) for r in split_bank(f.benign, heldout)] for f in law_families]
            edge = _interleave([[b for b in g if b.request.type in corpus.LOOKALIKE_TYPES] for g in per_family])
            safe = _interleave([[b for b in g if b.request.type not in corpus.LOOKALIKE_TYPES] for g in per_family])
            everything = _interleave(per_family)
            self.benign[(law, S)] = safe or everything
            self.benign[(law, E)] = edge or everything
            if not self.harmful[law] or not everything:
                raise GenerationError(f"the ethics corpus has no harmful or no benign requests for {law.title}")
        # The same pools split by request form, for the form sequence every cell follows.
        self.harmful_forms = {law: _by_form(pool, lambda p: p[1].form) for law, pool in self.harmful.items()}
        self.benign_forms = {key: _by_form(pool, lambda b: b.request.form) for key, pool in self.benign.items()}
        d = corpus.dialogues()
        recipe = d["fiction_recipe"]
        self.recipe_questions = split_bank(recipe["questions"], heldout)
        self.recipe = recipe
        self.conflicts = d["conflicts"]
        self.scenarios = split_bank(d["scenarios"], heldout)
        self.pushbacks = split_bank(d["pushbacks"], heldout)
        self.opener_leads = split_bank(d["opener_leads"], heldout)
        self.opener_personas = tuple(d["opener_personas"])
        self.opener_closings = tuple(d["opener_closings"])
        self.bank = lambda items: split_bank(items, heldout)  # noqa: E731
        # One period of the form sequence; slot j uses form _form_order[j % period], and is the
        # _form_rank-th use of that form in its period.
        self._form_order = balanced_sequence(20, FORM_WEIGHTS)
        self._form_counts = {f: self._form_order.count(f) for f in FORM_WEIGHTS}
        seen: dict[str, int] = defaultdict(int)
        self._form_rank = []
        for form in self._form_order:
            self._form_rank.append(seen[form])
            seen[form] += 1

    # --- public ------------------------------------------------------------------------------
    def generate(self) -> ConstitutionalDataset:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:{'heldout' if cfg.heldout else 'train'}")
        space = _PromptSpace(rng, set())
        slots: list[tuple[ExampleType, LawCategory | None, int]] = []
        difficulties = difficulty_sequence(cfg.size)
        for kind, law, count in plan_counts(cfg.size):
            # Shuffle difficulty within the cell (its counts stay exact) so that request j % n
            # is not locked to the same difficulties by the sequence's period.
            start = len(slots)
            cell = difficulties[start : start + count]
            rng.shuffle(cell)
            difficulties[start : start + count] = cell
            slots += [(kind, law, j) for j in range(count)]
        examples = []
        for index, ((kind, law, j), difficulty) in enumerate(zip(slots, difficulties)):
            example_id = f"{cfg.id_prefix}_{index + 1:06d}"
            maker = {
                H: self._harmful,
                S: self._helpful,
                E: self._helpful,
                ExampleType.LAW_CONFLICT: self._conflict,
                ExampleType.MULTI_TURN: self._multi_turn,
            }[kind]
            examples.append(maker(example_id, kind, law, j, difficulty, space, rng))
        return ConstitutionalDataset(examples).split(cfg.split_ratios, seed=cfg.seed)

    # --- phrasing ----------------------------------------------------------------------------
    def _base(self, request: corpus.Request, stem: str) -> str:
        return fill(stem, x=request.text, context=request.context)

    def _styled(self, difficulty: Difficulty, text: str, decoration: str, suffix: str) -> str:
        """The difficulty's frame around an already-phrased request: the same for both labels."""
        if difficulty is Difficulty.EASY:
            return _prefixed(decoration, text) + suffix
        return fill(decoration, r=_lower_first(text), R=text) + suffix

    def _decorations(self, difficulty: Difficulty) -> tuple[str, ...]:
        return self.easy_prefixes if difficulty is Difficulty.EASY else self.wrappers[difficulty]

    def request_prompt(self, space, difficulty: Difficulty, request: corpus.Request) -> str:
        """One unique prompt for ``request`` at ``difficulty`` (stem x frame x suffix)."""
        pools = (self.stems[request.form], self._decorations(difficulty), self.suffixes)
        return space.draw(pools, lambda s, d, x: self._styled(difficulty, self._base(request, s), d, x))[1]

    def _context_prompt(self, space, difficulty, pools, render):
        """Prompt from an already-phrased request (conflicts, crossing turns), styled by difficulty."""
        decorations = self.conflict_hard if difficulty is Difficulty.HARD else self._decorations(difficulty)

        def styled(*choice):
            *inner, decoration, suffix = choice
            text = render(*inner)
            if difficulty is Difficulty.HARD:
                return decoration + text + suffix
            return self._styled(difficulty, text, decoration, suffix)

        return space.draw((*pools, decorations, self.suffixes), styled)

    def _refusal(self, family: corpus.Family, difficulty: Difficulty, rng: random.Random) -> str:
        """The opener, what answering would enable, the Law, what instead. (Putting the Law right after
        the opener was measured worse: with the refusal rows tuned, the text after a forced refusal
        token refused 0.500 of 60 validation prompts against 0.850, and named the Law no more often:
        bench/results/text_follows_token_law_order_cpu.log.)"""
        note = self.notes.get(difficulty, "")
        return f"{rng.choice(self.refusal_openers)} {note}Answering would {family.harm}. {family.principle} {family.alternative}"

    def _harmful_opening(self, ask: str, rng: random.Random) -> str:
        return fill(rng.choice(self.harmful_openings), x=ask) + TRUNCATION

    # --- makers ------------------------------------------------------------------------------
    def _pick(self, pool: Sequence, by_form: dict[str, list], j: int):
        """The request for slot ``j`` of a cell: the cell's form sequence (FORM_WEIGHTS, the same
        for every label) says which form, and each form's requests are cycled in order."""
        form = self._form_order[j % len(self._form_order)]
        choices = by_form[form] or pool
        position = self._form_rank[j % len(self._form_order)] + (j // len(self._form_order)) * self._form_counts[form]
        return choices[position % len(choices)]

    def _harmful(self, example_id, kind, law, j, difficulty, space, rng):
        family, request = self._pick(self.harmful[law], self.harmful_forms[law], j)
        return ConstitutionalExample(
            example_id=example_id,
            example_type=kind,
            law_category=law,
            prompt=self.request_prompt(space, difficulty, request),
            response_harmful=self._harmful_opening(request.text, rng),
            response_ethical=self._refusal(family, difficulty, rng),
            critique=_critique(request.text, family.harm, law, difficulty),
            principle=family.principle,
            difficulty=difficulty,
            expected_behavior=Behavior.REFUSE,
            tags=(family.key, family.category, "harmful", f"req:{request.key}", difficulty.value),
        )

    def _helpful(self, example_id, kind, law, j, difficulty, space, rng):
        pool = self.benign[(law, kind)]
        recipe_turn = kind is E and law is LawCategory.LAW_1 and j % (len(pool) + 1) == len(pool)
        if recipe_turn:  # the one edge family that must be refused: fiction asking for a real recipe
            return self._fiction_recipe(example_id, j, difficulty, space, rng)
        item = self._pick(pool, self.benign_forms[(law, kind)], j)
        request = item.request
        lookalike = ("benign_lookalike",) if request.type in corpus.LOOKALIKE_TYPES else ()
        return ConstitutionalExample(
            example_id=example_id,
            example_type=kind,
            law_category=law,
            prompt=self.request_prompt(space, difficulty, request),
            response_ethical=request.answer,
            difficulty=difficulty,
            expected_behavior=Behavior.COMPLY,
            tags=(item.family.key, item.family.category, request.type, *lookalike, f"req:{request.key}", difficulty.value),
        )

    def _fiction_recipe(self, example_id, j, difficulty, space, rng):
        r = self.recipe
        questions = self.recipe_questions
        _, prompt = self._context_prompt(space, difficulty, (questions,), lambda q: q)
        law = LawCategory.LAW_1
        return ConstitutionalExample(
            example_id=example_id,
            example_type=E,
            law_category=law,
            prompt=prompt,
            response_ethical=r["answer"],
            response_harmful=self._harmful_opening("write that out exactly", rng),
            critique=_critique("put real operational instructions into a story", r["harm"], law, difficulty),
            principle=r["principle"],
            difficulty=difficulty,
            expected_behavior=Behavior.REFUSE,
            tags=(r["key"], *r["tags"], "req:fiction_recipe", difficulty.value),
        )

    def _conflict(self, example_id, kind, law, j, difficulty, space, rng):
        conflict = self.conflicts[j % len(self.conflicts)]
        winner, loser = (LawCategory(x) for x in conflict["laws"])
        templates = self.bank(conflict["templates"])
        family = None
        if conflict.get("orders"):
            (template, order, *_), prompt = self._context_prompt(
                space, difficulty, (templates, self.bank(conflict["orders"])), lambda t, o: fill(t, order=o)
            )
        else:
            candidates = [(f, r) for f, r in self.harmful[winner] if "self_harm" not in f.category]
            pool = [(f, r) for f, r in candidates if r.form == "how"] or [(f, r) for f, r in candidates if r.form == "task"]
            family, request = pool[(j // len(self.conflicts)) % len(pool)]
            (template, _, *_), prompt = self._context_prompt(
                space, difficulty, (templates, [request]), lambda t, r: fill(t, ask=r.text)
            )
            order = request.text
        precedence = f"Law {int(winner)} takes precedence over Law {int(loser)} in the decision order (0 > 1 > 2 > 3 > 4)."
        principle = f"{precedence} {LAWS[winner].title}: {LAWS[winner].summary}"
        tension = (
            f"The request sets {LAWS[loser].title} against {LAWS[winner].title}. "
            f"{LAWS[winner].title} ranks higher, so it decides the answer."
        )
        fields: dict = {}
        if conflict.get("comply"):
            reply = fill(conflict["reply"], order=order)
            fields["critique"] = tension + " Nothing higher forbids the instruction, so it is followed."
            behavior = Behavior.COMPLY
        else:
            harm = family.harm if family else "remove the safeguards that protect every user"
            alternative = family.alternative if family else ""
            reply = fill(conflict["reply"], order=order, harm=harm, alternative=alternative)
            reply = f"{rng.choice(self.refusal_openers)} {self.notes.get(difficulty, '') if difficulty is Difficulty.ADVERSARIAL else ''}{reply}"
            fields = dict(
                response_harmful=self._harmful_opening(order, rng),
                critique=f"{tension} Complying would {harm}.",
            )
            behavior = Behavior.REFUSE
        return ConstitutionalExample(
            example_id=example_id,
            example_type=kind,
            law_category=winner,
            laws_involved=(winner, loser),
            prompt=prompt,
            response_ethical=" ".join(reply.split()),
            principle=principle,
            difficulty=difficulty,
            expected_behavior=behavior,
            tags=(conflict["key"], "law_conflict", f"law{int(winner)}_over_law{int(loser)}",
                  f"req:{conflict['key']}", difficulty.value),
            **fields,
        )

    def _multi_turn(self, example_id, kind, law, j, difficulty, space, rng):
        scenario = self.scenarios[j % len(self.scenarios)]
        law = LawCategory(scenario["law"])
        _, first = space.draw(
            (self.opener_leads, self.opener_personas, scenario["openers"], self.opener_closings),
            lambda a, b, c, d: _prefixed(a, b + c + d),
        )
        crossing = self._context_prompt(
            _PromptSpace(rng, set()), difficulty, (scenario["crossing"],), lambda c: c
        )[1]
        turns = [Turn("user", first), Turn("assistant", scenario["opener_reply"])]
        for user, assistant in scenario["steps"]:
            turns += [Turn("user", user), Turn("assistant", assistant)]
        turns.append(Turn("user", crossing))
        escalation = sum(t.role == "user" for t in turns) - 1
        refusal = scenario["refusal"]
        if difficulty is Difficulty.ADVERSARIAL:
            refusal = self.notes[Difficulty.ADVERSARIAL] + refusal
        if (j // len(self.scenarios)) % 3 == 2:  # the user pushes back after the refusal
            turns += [Turn("assistant", refusal), Turn("user", rng.choice(self.pushbacks))]
            refusal = "I understand this matters to you, but my answer stays the same. " + scenario["refusal"]
        principle = f"{LAWS[law].title}: {LAWS[law].summary} The refusal lands on the turn that crosses the line, whatever came before."
        return ConstitutionalExample(
            example_id=example_id,
            example_type=kind,
            law_category=law,
            prompt=first,
            turns=tuple(turns),
            escalation_turn=escalation,
            response_harmful=self._harmful_opening("set that up", rng),
            response_ethical=refusal,
            critique=(
                f"The conversation starts benignly and escalates: user turn {escalation + 1} asks for help to "
                f"{scenario['harm']}. Helping would violate {LAWS[law].title}; earlier helpful answers don't make it acceptable."
            ),
            principle=principle,
            difficulty=difficulty,
            expected_behavior=Behavior.REFUSE,
            tags=(scenario["key"], *scenario["tags"], f"req:{scenario['key']}", difficulty.value),
        )


def _critique(ask: str, harm: str, law: LawCategory, difficulty: Difficulty) -> str:
    framing = {
        Difficulty.MEDIUM: " The stated reason doesn't change what the answer would enable.",
        Difficulty.HARD: " The hypothetical or fictional framing is a wrapper around the same operational request.",
        Difficulty.ADVERSARIAL: " The jailbreak framing tries to switch off the Laws, which is itself a Law 3 violation.",
    }.get(difficulty, "")
    return (
        f"The draft response starts to explain how to {ask}. Completing it would {harm}, "
        f"violating {LAWS[law].title}.{framing} A good answer refuses clearly, names the Law, "
        "and offers a safe alternative."
    )

def generate_examples(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, heldout: bool = False) -> ConstitutionalDataset:
    """Convenience entry point: ``generate_examples(800)`` is the seed's base set."""
    return EthicsExampleGenerator(GeneratorConfig(size=size, seed=seed, heldout=heldout)).generate()
