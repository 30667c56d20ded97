"""``python -m tasks stage``: validate, tokenise and fingerprint a sentence-pair data set.

Output (written to a temporary sibling, then renamed into place)::

    manifest.json        rows and label balance per split, rejected rows, tokenizer, fingerprint
    tokenizer/           the tokenizer the ids were made with (training copies it into the model)
    train/ validation/ test/
                         one Arrow data set per split (``datasets.save_to_disk``): the raw text, the
                         label, and unpadded ``input_ids``/``token_type_ids``; memory-mapped, so the
                         train step streams it without parsing
"""

from __future__ import annotations

import logging
from collections import Counter

from tasks.config import StageArguments
from tasks.data.checks import (
    UNLABELLED_VALUE,
    CheckedPair,
    Leak,
    carve_validation,
    check_records,
    find_duplicates,
    find_leakage,
    fingerprint,
)
from tasks.data.files import SPLITS, read_source
from tasks.errors import BadRow, BadRowsError, DataError, LeakageError
from tasks.runtime.models import load_tokenizer
from tasks.runtime.outputs import atomic_output, write_json
from tasks.serving.contract import LABELS

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "nlp-workflow/staged-data/v1"
_LISTED = 20


def validated_splits(args: StageArguments) -> tuple[dict[str, list[CheckedPair]], dict, list[BadRow]]:
    """Read the source and apply every rule; returns accepted pairs by split, facts for the manifest, rejects."""
    records, files = read_source(args.source, args.allowed_sources)
    splits: dict[str, list[CheckedPair]] = {}
    rejected: list[BadRow] = []
    for split in SPLITS:
        if split in records:
            splits[split], bad = check_records(split, records[split])
            rejected += bad
    if rejected and args.on_bad_rows == "fail":
        raise BadRowsError(rejected)

    carved = "validation" not in splits
    if carved:
        splits["train"], splits["validation"] = carve_validation(splits["train"], args.validation_fraction)
        log.info(
            "no validation split in the source: carved %d of %d train pairs (%.0f%%) by pair hash",
            len(splits["validation"]),
            len(splits["train"]) + len(splits["validation"]),
            100 * args.validation_fraction,
        )
    splits = {split: splits[split] for split in SPLITS if split in splits}

    leaks = find_leakage(splits)
    if leaks and args.on_bad_rows == "fail":
        listed = "\n".join(
            f"  {leak.pair.origin} ({leak.split}) repeats {leak.first_origin} ({leak.first_split})"
            for leak in leaks[:_LISTED]
        )
        raise LeakageError(
            f"{len(leaks)} pair(s) appear in more than one split, which would inflate evaluation scores:\n{listed}\n"
            "Remove them from the data, or pass --on-bad-rows skip to drop them from the later split."
        )
    for leak in leaks:
        splits[leak.split].remove(leak.pair)
        rejected.append(_leak_row(leak))

    facts = {
        "files": files,
        "validation": {"carved_from_train": carved, "fraction": args.validation_fraction if carved else None},
        "duplicates": {split: find_duplicates(pairs)[:_LISTED] for split, pairs in splits.items()},
    }
    return splits, facts, rejected


def _leak_row(leak: Leak) -> BadRow:
    reason = f"also in {leak.first_split} at {leak.first_origin}; dropped from {leak.split}"
    return BadRow(leak.pair.file, leak.pair.line, "(pair)", reason, leak.pair.row)


def tokenise(tokenizer, pairs: list[CheckedPair], max_seq_length: int) -> dict:
    """Token ids per pair; only the pairs longer than ``max_seq_length`` are encoded a second time, truncated."""
    first, second = [pair.sentence1 for pair in pairs], [pair.sentence2 for pair in pairs]
    encoded = tokenizer(first, second, return_attention_mask=False)
    input_ids, token_type_ids = encoded["input_ids"], encoded["token_type_ids"]
    long = [index for index, ids in enumerate(input_ids) if len(ids) > max_seq_length]
    if long:
        cut = tokenizer(
            [first[i] for i in long],
            [second[i] for i in long],
            truncation="longest_first",
            max_length=max_seq_length,
            return_attention_mask=False,
        )
        for position, index in enumerate(long):
            input_ids[index], token_type_ids[index] = cut["input_ids"][position], cut["token_type_ids"][position]
    truncated = set(long)
    return {
        "sentence1": first,
        "sentence2": second,
        "label": [pair.label for pair in pairs],
        "origin": [pair.origin for pair in pairs],
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "truncated": [index in truncated for index in range(len(pairs))],
    }


def split_summary(pairs: list[CheckedPair], columns: dict, duplicates: list[list[str]]) -> dict:
    labels = Counter(pair.label for pair in pairs)
    labelled = len(pairs) - labels[UNLABELLED_VALUE]
    lengths = [len(ids) for ids in columns["input_ids"]]
    return {
        "rows": len(pairs),
        "labels": {name: labels[index] for index, name in enumerate(LABELS)} | {"unlabelled": labels[UNLABELLED_VALUE]},
        "positive_fraction": round(labels[1] / labelled, 4) if labelled else None,
        "duplicate_groups": len(duplicates),
        "truncated": sum(columns["truncated"]),
        "tokens": {"mean": round(sum(lengths) / len(lengths), 1) if lengths else 0, "max": max(lengths, default=0)},
    }


def build_dataset(columns_by_split: dict[str, dict]):
    import datasets

    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(LABELS)),
            "origin": datasets.Value("string"),
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "token_type_ids": datasets.Sequence(datasets.Value("int8")),
            "truncated": datasets.Value("bool"),
        }
    )
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(columns, features=features) for split, columns in columns_by_split.items()}
    )


def run(args: StageArguments) -> None:
    splits, facts, rejected = validated_splits(args)
    for split in ("train", "validation"):
        if not splits[split]:
            why = f"{len(rejected)} bad row(s) were dropped"
            if split == "validation" and facts["validation"]["carved_from_train"]:
                why = f"carving {args.validation_fraction:.0%} of train by pair hash selected none; add a validation split or raise --validation-fraction"
            raise DataError(f"{args.source}: the {split} split has no usable rows ({why})")
    tokenizer = load_tokenizer(args.tokenizer)
    columns = {split: tokenise(tokenizer, pairs, args.max_seq_length) for split, pairs in splits.items()}
    manifest = {
        "format": FORMAT,
        "source": args.source,
        "files": facts["files"],
        "splits": {
            split: split_summary(pairs, columns[split], facts["duplicates"][split]) for split, pairs in splits.items()
        },
        "validation": facts["validation"],
        "duplicates": facts["duplicates"],
        "on_bad_rows": args.on_bad_rows,
        "rejected_count": len(rejected),
        "rejected_rows": [row.as_dict() for row in rejected],
        "tokenizer": {"source": args.tokenizer, "class": type(tokenizer).__name__, "vocab_size": len(tokenizer)},
        "max_seq_length": args.max_seq_length,
        "fingerprint": fingerprint(splits),
    }
    with atomic_output(args.output) as work:
        build_dataset(columns).save_to_disk(str(work))
        tokenizer.save_pretrained(work / "tokenizer")
        write_json(work / MANIFEST, manifest)

    for split, summary in manifest["splits"].items():
        log.info(
            "%s: %d rows, %s, %d duplicate group(s), %d truncated to %d tokens",
            split,
            summary["rows"],
            summary["labels"],
            summary["duplicate_groups"],
            summary["truncated"],
            args.max_seq_length,
        )
    if rejected:
        log.warning(
            "dropped %d bad row(s), listed in %s/%s; first: %s", len(rejected), args.output, MANIFEST, rejected[0]
        )
    log.info("staged %s -> %s (fingerprint %s)", args.source, args.output, manifest["fingerprint"])
