"""``python -m tasks sample``: a generated paraphrase data set in GLUE MRPC TSV form.

Offline demo and test data. Like MRPC, it is news-style sentence pairs, about two thirds paraphrases.

- A positive pair is one event told twice: another template (reordered clauses, active/passive), synonyms,
  "percent" for "%", and sometimes a minor detail (the day) left out of one sentence.
- A hard negative tells the same event with exactly one fact changed: a number, a name, a date, the
  polarity ("agreed"/"declined"), or two roles swapped ("A bought B" / "B bought A"). Often it keeps the
  same template, so the two sentences share all but a word or two.
- A topical negative tells a different event that shares a company, person or city.
- A small share of labels is flipped (``--label-noise``), as MRPC's annotators disagreed on some pairs;
  it keeps a perfect score out of reach.

Every pair is unique across the three files, so the splits never leak into each other.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.config import SampleArguments
from tasks.runtime.outputs import atomic_output

log = logging.getLogger(__name__)

GLUE_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

POSITIVE_SHARE = 0.66
HARD_NEGATIVE_SHARE = 0.65

_FIRST = (
    "James Mary Robert Linda Michael Susan David Karen Richard Nancy Thomas Lisa Daniel Sandra Mark Donna "
    "Paul Carol Steven Ruth Kevin Sharon Brian Laura George Helen Edward Anna Ronald Emily Jason Maria"
).split()
_LAST = (
    "Smith Johnson Brown Garcia Miller Davis Wilson Moore Taylor Anderson Thomas Jackson White Harris Martin "
    "Thompson Clark Lewis Walker Hall Allen Young King Wright Scott Green Baker Adams Nelson Carter Mitchell"
).split()
_COMPANIES = (
    "Oracle",
    "PeopleSoft",
    "Microsoft",
    "Intel",
    "Boeing",
    "General Motors",
    "Ford",
    "Merck",
    "Pfizer",
    "Wal-Mart",
    "Kmart",
    "Sears",
    "AT&T",
    "Verizon",
    "Sprint",
    "IBM",
    "Hewlett-Packard",
    "Dell",
    "Sun Microsystems",
    "Cisco",
    "Motorola",
    "Nokia",
    "Xerox",
    "Kodak",
    "Delta",
    "United Airlines",
    "Alcoa",
    "Chevron",
    "Citigroup",
    "Morgan Stanley",
    "Coca-Cola",
    "PepsiCo",
    "Disney",
    "Viacom",
    "Comcast",
    "Yahoo",
    "Amgen",
    "Qualcomm",
)
_CITIES = (
    "Boston",
    "Chicago",
    "Houston",
    "Phoenix",
    "Dallas",
    "Denver",
    "Seattle",
    "Atlanta",
    "Miami",
    "Detroit",
    "Baltimore",
    "Portland",
    "Memphis",
    "Nashville",
    "Cleveland",
    "Pittsburgh",
    "Tampa",
    "Omaha",
    "Tulsa",
    "Sacramento",
    "Toronto",
    "London",
    "Paris",
    "Berlin",
    "Madrid",
    "Rome",
    "Sydney",
    "Tokyo",
    "Manila",
    "Lagos",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October")
_QUARTERS = ("first", "second", "third", "fourth")
_PRODUCTS = ("Pocket PC", "Xbox", "ThinkPad", "Walkman", "Palm Pilot", "iPod", "Razr", "Centrino", "Prius", "Zune")
_BILLS = ("energy", "tax relief", "Medicare", "defense spending", "farm", "highway", "immigration", "education")
_CRIMES = ("bank robbery", "bombing", "fraud scheme", "kidnapping", "arson attack", "shooting", "smuggling ring")
_DISEASES = ("heart disease", "breast cancer", "diabetes", "stroke", "Alzheimer's disease", "asthma", "malaria")
_DRUGS = ("aspirin", "tamoxifen", "Lipitor", "Zocor", "vitamin E", "Celebrex", "Vioxx", "estrogen")
_SCHOOLS = ("Harvard", "Stanford", "Yale", "Duke", "Johns Hopkins", "Columbia", "Emory", "Tufts")
_INDEXES = ("Dow Jones industrial average", "Nasdaq composite index", "Standard & Poor's 500 index")
_ROLES = ("chief executive", "chief financial officer", "president", "chairman", "chief operating officer")


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _number(low: int, high: int) -> Callable[[random.Random], str]:
    return lambda rng: str(rng.randint(low, high))


def _percent(rng: random.Random) -> str:
    return f"{rng.randint(2, 45)}.{rng.randint(1, 9)}" if rng.random() < 0.4 else str(rng.randint(2, 45))


def _count(rng: random.Random) -> str:
    value = rng.choice((rng.randint(3, 60), rng.randint(100, 900), rng.randint(1, 9) * 1000 + rng.randint(0, 9) * 100))
    return f"{value:,}"


# Each slot kind: how to draw a value. A hard negative redraws one until it differs.
KINDS: dict[str, Callable[[random.Random], str]] = {
    "person": _person,
    "company": lambda rng: rng.choice(_COMPANIES),
    "city": lambda rng: rng.choice(_CITIES),
    "day": lambda rng: rng.choice(_DAYS),
    "month": lambda rng: rng.choice(_MONTHS),
    "quarter": lambda rng: rng.choice(_QUARTERS),
    "product": lambda rng: rng.choice(_PRODUCTS),
    "bill": lambda rng: rng.choice(_BILLS),
    "crime": lambda rng: rng.choice(_CRIMES),
    "disease": lambda rng: rng.choice(_DISEASES),
    "drug": lambda rng: rng.choice(_DRUGS),
    "school": lambda rng: rng.choice(_SCHOOLS),
    "index": lambda rng: rng.choice(_INDEXES),
    "role": lambda rng: rng.choice(_ROLES),
    "amount": _number(20, 950),
    "percent": _percent,
    "count": _count,
    "years": _number(2, 30),
    "points": _number(8, 240),
    "price": _number(99, 1499),
    "votes": _number(51, 78),
}
# Kinds whose change does not change what happened (a job title is worded, not reported).
_NOT_FACTS = {"role"}
# Kinds an unrelated event can share with the first one, making a topical negative.
_SHARED_KINDS = ("company", "person", "city")


@dataclass(frozen=True)
class Event:
    """A kind of news event: its slots, and the templates that tell it.

    ``[a|b]`` in a template is the positive or the negated wording. ``swaps`` names pairs of slots whose
    exchange reverses the meaning ("A bought B"/"B bought A").
    """

    name: str
    slots: dict[str, str]
    templates: tuple[str, ...]
    swaps: tuple[tuple[str, str], ...] = ()

    @property
    def has_polarity(self) -> bool:
        return "[" in self.templates[0]


EVENTS: tuple[Event, ...] = (
    Event(
        "acquisition",
        {"buyer": "company", "target": "company", "amount": "amount", "day": "day"},
        (
            "{buyer} [agreed|declined] to buy {target} for ${amount} million on {day}.",
            "On {day}, {buyer} [agreed|refused] to acquire {target} in a deal valued at ${amount} million.",
            "{target} [will|will not] be acquired by {buyer} for ${amount} million, the companies said {day}.",
            "{buyer} said it [would|would not] purchase {target} for about ${amount} million.",
        ),
        swaps=(("buyer", "target"),),
    ),
    Event(
        "earnings",
        {"company": "company", "quarter": "quarter", "percent": "percent", "amount": "amount"},
        (
            "{company}'s {quarter}-quarter profit [rose|fell] {percent} percent to ${amount} million.",
            "{company} said net income for the {quarter} quarter [climbed|dropped] {percent} percent, to ${amount} million.",
            "Profit at {company} [increased|declined] {percent} percent in the {quarter} quarter, reaching ${amount} million.",
        ),
    ),
    Event(
        "layoffs",
        {"company": "company", "count": "count", "city": "city", "month": "month"},
        (
            "{company} [will|will not] cut {count} jobs at its {city} plant by {month}.",
            "By {month}, {company} [plans|does not plan] to eliminate {count} positions at its plant in {city}.",
            "About {count} workers at the {city} factory of {company} [will lose|will keep] their jobs by {month}.",
        ),
    ),
    Event(
        "sentencing",
        {"defendant": "person", "years": "years", "city": "city", "day": "day"},
        (
            "A federal judge in {city} sentenced {defendant} to {years} years in prison on {day}.",
            "{defendant} was sentenced to {years} years in prison by a federal judge in {city} on {day}.",
            "On {day}, {defendant} received a {years}-year prison sentence from a federal court in {city}.",
            "{defendant} was sentenced to {years} years in prison by a federal court in {city}.",
        ),
    ),
    Event(
        "markets",
        {"index": "index", "points": "points", "percent": "percent", "day": "day"},
        (
            "The {index} [rose|fell] {points} points, or {percent} percent, on {day}.",
            "On {day} the {index} [gained|lost] {points} points, or {percent} percent.",
            "The {index} closed {points} points [higher|lower] on {day}, a move of {percent} percent.",
        ),
    ),
    Event(
        "storm",
        {"count": "count", "city": "city", "day": "day"},
        (
            "At least {count} people were killed when a storm hit {city} on {day}.",
            "A storm that struck {city} on {day} killed at least {count} people.",
            "The storm left at least {count} people dead in {city}, officials said {day}.",
            "At least {count} people died after a storm hit {city}.",
        ),
    ),
    Event(
        "launch",
        {"company": "company", "product": "product", "month": "month", "price": "price"},
        (
            "{company} [will|will not] begin selling the {product} in {month} for ${price}.",
            "The {product} [goes|does not go] on sale in {month} at a price of ${price}, {company} said.",
            "Starting in {month}, customers [can|cannot] buy {company}'s {product} for ${price}.",
        ),
    ),
    Event(
        "vote",
        {"bill": "bill", "votes": "votes", "day": "day"},
        (
            "The Senate voted {votes} to {against} on {day} to [approve|reject] the {bill} bill.",
            "On {day}, senators [approved|rejected] the {bill} bill by a vote of {votes} to {against}.",
            "The {bill} bill was [passed|defeated] {votes}-{against} by the Senate on {day}.",
        ),
    ),
    Event(
        "appointment",
        {"company": "company", "person": "person", "predecessor": "person", "role": "role", "day": "day"},
        (
            "{company} named {person} as its new {role} on {day}, replacing {predecessor}.",
            "On {day}, {company} appointed {person} {role}, succeeding {predecessor}.",
            "{person} will replace {predecessor} as {role} of {company}, the company said {day}.",
        ),
        swaps=(("person", "predecessor"),),
    ),
    Event(
        "arrest",
        {"city": "city", "count": "count", "crime": "crime", "day": "day"},
        (
            "Police in {city} arrested {count} people on {day} in connection with the {crime}.",
            "{count} suspects were arrested by {city} police on {day} over the {crime}.",
            "On {day}, {city} police detained {count} people suspected of involvement in the {crime}.",
        ),
    ),
    Event(
        "study",
        {"school": "school", "drug": "drug", "disease": "disease", "percent": "percent"},
        (
            "Researchers at {school} found that {drug} [cut|did not cut] the risk of {disease} by {percent} percent.",
            "{drug} [reduced|did not reduce] the risk of {disease} by {percent} percent, a {school} study found.",
            "A {school} study [showed|found no evidence] that {drug} lowers the risk of {disease} by {percent} percent.",
        ),
    ),
    Event(
        "quote",
        {"person": "person", "company": "company", "role": "role", "day": "day", "month": "month"},
        (
            '"We [expect|do not expect] the deal to close by {month}," {company} {role} {person} said on {day}.',
            '{person}, the {role} of {company}, said on {day}: "We [expect|do not expect] to close the deal by {month}."',
            "{company} [expects|does not expect] the deal to close by {month}, {role} {person} said {day}.",
        ),
    ),
)

# Synonyms applied to rewrites and to negatives alike, so a changed word alone never gives the label away.
SYNONYMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\bsaid\b", ("stated", "announced")),
    (r"\babout\b", ("roughly", "approximately")),
    (r"\bpeople\b", ("persons",)),
    (r"\bplant\b", ("facility",)),
    (r"\bjobs\b", ("positions",)),
    (r"(\d) percent\b", (r"\1%",)),
    (r"\bfederal judge\b", ("U.S. judge",)),
    (r"\bthe companies\b", ("the two firms",)),
    (r"\bAt least\b", ("No fewer than",)),
    (r"\bdeal\b", ("transaction",)),
)

_ALTERNATION = re.compile(r"\[([^|\]]*)\|([^\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class GeneratedPair:
    """A generated sentence pair and its label (1: paraphrase)."""

    label: int
    sentence1: str
    sentence2: str

    @property
    def key(self) -> tuple[str, str]:
        return tuple(sorted((self.sentence1.casefold(), self.sentence2.casefold())))


class PairGenerator:
    """Draws labelled sentence pairs from one seeded random stream."""

    def __init__(self, seed: int, label_noise: float):
        self.rng = random.Random(seed)
        self.label_noise = label_noise

    def draw_values(self, event: Event) -> dict[str, str]:
        values: dict[str, str] = {}
        for slot, kind in event.slots.items():
            value = KINDS[kind](self.rng)
            while value in values.values():
                value = KINDS[kind](self.rng)
            values[slot] = value
        if "votes" in values:
            values["against"] = str(100 - int(values["votes"]) - self.rng.randint(0, 3))
        return values

    def render(self, template: str, values: dict[str, str], positive: bool = True) -> str:
        text = _ALTERNATION.sub(lambda m: m.group(1) if positive else m.group(2), template)
        text = text.format(**values)
        return text[0].upper() + text[1:]

    def reword(self, sentence: str) -> str:
        for pattern, choices in SYNONYMS:
            if re.search(pattern, sentence) and self.rng.random() < 0.5:
                sentence = re.sub(pattern, self.rng.choice(choices), sentence, count=1)
        return sentence

    def positive(self) -> GeneratedPair:
        event = self.rng.choice(EVENTS)
        values = self.draw_values(event)
        polarity = self.rng.random() < 0.8
        first, second = self.rng.sample(event.templates, 2)
        return GeneratedPair(
            1, self.render(first, values, polarity), self.reword(self.render(second, values, polarity))
        )

    def hard_negative(self) -> GeneratedPair:
        event = self.rng.choice(EVENTS)
        values = self.draw_values(event)
        polarity = self.rng.random() < 0.8
        first = self.rng.choice(event.templates)
        second = first if self.rng.random() < 0.4 else self.rng.choice(event.templates)
        # Slots in both sentences, in a fixed order: set order varies between processes (hash seeding).
        shared = sorted(set(_SLOT.findall(first)) & set(_SLOT.findall(second)))
        changes = [slot for slot in shared if slot in event.slots and event.slots[slot] not in _NOT_FACTS]
        changes += ["polarity"] * event.has_polarity
        changes += ["swap"] * bool(event.swaps)
        change = self.rng.choice(changes)
        changed, changed_polarity = dict(values), polarity
        if change == "polarity":
            changed_polarity = not polarity
        elif change == "swap":
            a, b = self.rng.choice(event.swaps)
            changed[a], changed[b] = values[b], values[a]
        else:
            while changed[change] == values[change]:
                changed[change] = KINDS[event.slots[change]](self.rng)
        sentence2 = self.reword(self.render(second, changed, changed_polarity))
        return GeneratedPair(0, self.render(first, values, polarity), sentence2)

    def topical_negative(self) -> GeneratedPair:
        first_event, second_event = self.rng.sample(EVENTS, 2)
        values, others = self.draw_values(first_event), self.draw_values(second_event)
        for kind in _SHARED_KINDS:
            here = [s for s, k in first_event.slots.items() if k == kind]
            there = [s for s, k in second_event.slots.items() if k == kind]
            if here and there:
                others[self.rng.choice(there)] = values[self.rng.choice(here)]
                break
        sentence1 = self.render(self.rng.choice(first_event.templates), values, self.rng.random() < 0.8)
        sentence2 = self.render(self.rng.choice(second_event.templates), others, self.rng.random() < 0.8)
        return GeneratedPair(0, sentence1, self.reword(sentence2))

    def pair(self) -> GeneratedPair:
        roll = self.rng.random()
        if roll < POSITIVE_SHARE:
            pair = self.positive()
        elif self.rng.random() < HARD_NEGATIVE_SHARE:
            pair = self.hard_negative()
        else:
            pair = self.topical_negative()
        if self.rng.random() < self.label_noise:
            pair = GeneratedPair(1 - pair.label, pair.sentence1, pair.sentence2)
        return pair


def generate(args: SampleArguments) -> dict[str, list[GeneratedPair]]:
    """Draw every split from one stream; a pair seen before is drawn again, so no pair repeats."""
    generator = PairGenerator(args.seed, args.label_noise)
    sizes = {"train": args.train_size, "validation": args.dev_size, "test": args.test_size}
    seen: set[tuple[str, str]] = set()
    splits: dict[str, list[GeneratedPair]] = {}
    for split, size in sizes.items():
        pairs: list[GeneratedPair] = []
        while len(pairs) < size:
            pair = generator.pair()
            if pair.key not in seen and pair.sentence1 != pair.sentence2:
                seen.add(pair.key)
                pairs.append(pair)
        splits[split] = pairs
    return splits


def write_glue_tsv(path: Path, pairs: list[GeneratedPair], ids: dict[str, int], rng: random.Random) -> None:
    """Write pairs as GLUE MRPC does: tab-separated, no quoting, sentence ids in the two id columns."""

    def sentence_id(sentence: str) -> int:
        if sentence not in ids:
            ids[sentence] = rng.randrange(1_000_000, 4_000_000)
        return ids[sentence]

    lines = ["\t".join(GLUE_HEADER)]
    for pair in pairs:
        fields = (pair.label, sentence_id(pair.sentence1), sentence_id(pair.sentence2), pair.sentence1, pair.sentence2)
        lines.append("\t".join(map(str, fields)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(args: SampleArguments) -> None:
    splits = generate(args)
    id_rng, ids = random.Random(args.seed), {}
    with atomic_output(args.output) as work:
        for split, pairs in splits.items():
            write_glue_tsv(work / SPLIT_FILES[split], pairs, ids, id_rng)
            positives = sum(pair.label for pair in pairs)
            log.info("%s: %d pairs, %.0f%% paraphrases", SPLIT_FILES[split], len(pairs), 100 * positives / len(pairs))
    for pair in splits["train"][:3]:
        log.info("example (label %d): %s ||| %s", pair.label, pair.sentence1, pair.sentence2)
    log.info("wrote %s", args.output)
