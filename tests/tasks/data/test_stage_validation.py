"""Every rule of staging: bad rows name file, line and field; skip mode; leakage; fingerprints; atomicity."""

import json
import re

import pytest

from tasks.config import StageArguments
from tasks.data.stage import run
from tasks.errors import BadRowsError, ConfigError, DataError, LeakageError, SchemaError
from tests.conftest import flags, run_tasks
from tests.tasks.data.test_stage_formats import DEV, PAIRS, TEST, glue_lines, write_splits

HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


def make_source(tmp_path, train_text=None, dev=DEV, test=TEST, name="train.tsv"):
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(train_text if train_text is not None else glue_lines(PAIRS), encoding="utf-8")
    (folder / "dev.tsv").write_text(glue_lines(dev))
    (folder / "test.tsv").write_text(glue_lines(test))
    return folder


def stage(tmp_path, source, tokenizer, **kwargs):
    output = tmp_path / "staged"
    run(StageArguments(output=str(output), source=str(source), tokenizer=str(tokenizer), **kwargs))
    return json.loads((output / "manifest.json").read_text())


BAD_TSV_ROWS = [
    ("2\t1\t2\tA sentence.\tAnother one.", "field 'Quality': must be 0 or 1, got '2'"),
    ("yes\t1\t2\tA sentence.\tAnother one.", "field 'Quality': must be 0 or 1, got 'yes'"),
    ("1\t1\t2\t\tAnother one.", "field '#1 String': is empty"),
    ("1\t1\t2\tA sentence.\t   ", "field '#2 String': is only whitespace"),
    (
        "1\t1\t2\tA sentence with a stray\ttab.\tAnother one.",
        "field '(line)': has 6 tab-separated fields, the header has 5",
    ),
    ("1\t1\tA sentence.\tAnother one.", "field '(line)': has 4 tab-separated fields, the header has 5"),
]


@pytest.mark.parametrize(
    ("line", "message"), BAD_TSV_ROWS, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_TSV_ROWS)]
)
def test_bad_tsv_row_names_file_line_and_field(tmp_path, minilm_path, line, message):
    text = glue_lines(PAIRS[:2]) + line + "\n" + "\n".join(glue_lines(PAIRS[2:]).splitlines()[1:]) + "\n"
    source = make_source(tmp_path, text)
    with pytest.raises(BadRowsError) as caught:
        stage(tmp_path, source, minilm_path)
    assert f"{source}/train.tsv:4: {message}" in str(caught.value)
    assert "1 bad row(s) in 1 file(s)" in str(caught.value)
    assert "--on-bad-rows skip" in str(caught.value)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"sentence1": "A.", "sentence2": "B.", "label": 3}, "field 'label': must be 0 or 1, got 3"),
        ({"sentence1": "A.", "sentence2": "B.", "label": True}, "field 'label': must be 0 or 1, got True"),
        ({"sentence1": "A.", "sentence2": "B.", "label": None}, "field 'label': must be 0 or 1, got None"),
        ({"sentence1": 5, "sentence2": "B.", "label": 1}, "field 'sentence1': must be text, got int 5"),
        ({"sentence1": "A.", "label": 1}, "field 'sentence2': missing"),
        ("not json", "field '(json)': invalid JSON"),
        ([1, 2], "field '(json)': expected a JSON object, got list"),
    ],
)
def test_bad_jsonl_row_names_line_and_field(tmp_path, minilm_path, row, message):
    good = [json.dumps({"sentence1": s1, "sentence2": s2, "label": label}) for label, s1, s2 in PAIRS]
    bad = row if isinstance(row, str) else json.dumps(row)
    source = make_source(tmp_path, "\n".join([good[0], good[1], bad, *good[2:]]) + "\n", name="train.jsonl")
    with pytest.raises(BadRowsError, match=re.escape(f"train.jsonl:3: {message}")):
        stage(tmp_path, source, minilm_path)


def test_bad_csv_row_and_parquet_row_are_located(tmp_path, minilm_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.csv").write_text('sentence1,sentence2,label\n"A, quoted",B,1\nC,D,maybe\nE,F\n')
    pq.write_table(pa.table({"sentence1": ["x", ""], "sentence2": ["y", "z"], "label": [0, 1]}), folder / "dev.parquet")
    with pytest.raises(BadRowsError) as caught:
        stage(tmp_path, folder, minilm_path)
    text = str(caught.value)
    assert "3 bad row(s) in 2 file(s)" in text
    assert "train.csv:3: field 'label': must be 0 or 1, got 'maybe'" in text
    assert "train.csv:4: field '(line)': has a different number of fields" in text
    assert "dev.parquet: row 2: field 'sentence1': is empty" in text


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "train.tsv",
            "Label\tA\tB\nx\ty\tz\n",
            r"train.tsv:1: header lacks column\(s\) '#1 String', '#2 String', 'Quality'",
        ),
        (
            "train.csv",
            "text_a,text_b,label\nx,y,1\n",
            r"train.csv:1: missing column\(s\) 'sentence1', 'sentence2'; .*found: 'text_a', 'text_b', 'label'",
        ),
        ("train.jsonl", '{"a": "x", "label": 1}\n', r"train.jsonl:1: missing column\(s\) 'sentence1', 'sentence2'"),
    ],
)
def test_missing_columns_fail_even_in_skip_mode(tmp_path, minilm_path, name, text, message):
    source = make_source(tmp_path, text, name=name)
    with pytest.raises(SchemaError, match=message):
        stage(tmp_path, source, minilm_path, on_bad_rows="skip")


def test_unlabelled_train_rows_are_bad(tmp_path, minilm_path):
    source = make_source(tmp_path, glue_lines(PAIRS, header="index\t#1 ID\t#2 ID\t#1 String\t#2 String"))
    with pytest.raises(
        BadRowsError, match="field 'Quality': is missing; only the test split may be unlabelled, not train"
    ):
        stage(tmp_path, source, minilm_path)


def test_skip_mode_drops_and_lists_bad_rows(tmp_path, minilm_path):
    text = glue_lines(PAIRS) + "7\t1\t2\tA.\tB.\n1\t1\t2\t \tB.\n"
    manifest = stage(tmp_path, make_source(tmp_path, text), minilm_path, on_bad_rows="skip")
    assert manifest["splits"]["train"]["rows"] == len(PAIRS)
    assert manifest["rejected_count"] == 2
    assert [(row["line"], row["field"]) for row in manifest["rejected_rows"]] == [(8, "Quality"), (9, "#1 String")]


def test_leakage_across_splits_is_an_error_naming_both_places(tmp_path, minilm_path):
    label, s1, s2 = PAIRS[1]
    leaked = [*DEV, (label, s2.upper(), "  " + s1)]  # same pair, other order, case and spacing
    source = make_source(tmp_path, dev=leaked)
    with pytest.raises(LeakageError) as caught:
        stage(tmp_path, source, minilm_path)
    assert f"{source}/dev.tsv:4 (validation) repeats {source}/train.tsv:3 (train)" in str(caught.value)


def test_leakage_in_skip_mode_drops_the_later_copy(tmp_path, minilm_path):
    source = make_source(tmp_path, dev=[*DEV, PAIRS[0]], test=[*TEST, PAIRS[0]])
    manifest = stage(tmp_path, source, minilm_path, on_bad_rows="skip")
    assert manifest["splits"]["validation"]["rows"] == len(DEV)
    assert manifest["splits"]["test"]["rows"] == len(TEST)
    assert sorted(row["file"].rsplit("/", 1)[1] for row in manifest["rejected_rows"]) == ["dev.tsv", "test.tsv"]


def test_duplicates_inside_a_split_are_reported_not_dropped(tmp_path, minilm_path):
    manifest = stage(tmp_path, make_source(tmp_path, glue_lines([*PAIRS, PAIRS[2]])), minilm_path)
    assert manifest["splits"]["train"]["rows"] == len(PAIRS) + 1
    assert manifest["splits"]["train"]["duplicate_groups"] == 1
    (group,) = manifest["duplicates"]["train"]
    assert [origin.rsplit(":", 1)[1] for origin in group] == ["4", "8"]


def test_fingerprint_is_stable_and_tracks_every_content_change(tmp_path, minilm_path):
    def fingerprint(name, pairs=PAIRS, dev=DEV):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.tsv").write_text(glue_lines(pairs))
        (folder / "dev.tsv").write_text(glue_lines(dev))
        return stage(tmp_path / name, folder, minilm_path)["fingerprint"]

    base = fingerprint("base")
    assert fingerprint("again") == base
    assert fingerprint("reordered", pairs=list(reversed(PAIRS))) == base
    changed = [
        fingerprint("label", pairs=[(1 - PAIRS[0][0], *PAIRS[0][1:]), *PAIRS[1:]]),
        fingerprint("word", pairs=[(PAIRS[0][0], PAIRS[0][1] + "!", PAIRS[0][2]), *PAIRS[1:]]),
        fingerprint("moved", pairs=PAIRS[:-1], dev=[*DEV, PAIRS[-1]]),
        fingerprint("removed", pairs=PAIRS[:-1]),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_truncation_is_counted(tmp_path, minilm_path):
    long = " ".join(["word"] * 40)
    manifest = stage(
        tmp_path, make_source(tmp_path, glue_lines([*PAIRS, (1, long, long)])), minilm_path, max_seq_length=32
    )
    assert manifest["splits"]["train"]["truncated"] == 1
    assert manifest["splits"]["train"]["tokens"]["max"] == 32


def test_failed_stage_keeps_the_previous_output_whole(tmp_path, minilm_path):
    stage(tmp_path, make_source(tmp_path), minilm_path)
    before = sorted(p.relative_to(tmp_path / "staged") for p in (tmp_path / "staged").rglob("*"))
    (tmp_path / "src" / "train.tsv").write_text(glue_lines(PAIRS) + "9\t1\t2\tA.\tB.\n")
    with pytest.raises(BadRowsError):
        stage(tmp_path, tmp_path / "src", minilm_path)
    assert sorted(p.relative_to(tmp_path / "staged") for p in (tmp_path / "staged").rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_exits_non_zero_with_the_message_and_no_traceback(tmp_path, minilm_path):
    source = make_source(tmp_path, glue_lines(PAIRS) + "5\t1\t2\tA.\tB.\n")
    result = run_tasks(
        "stage",
        "--source",
        str(source),
        "--output",
        str(tmp_path / "out"),
        "--tokenizer",
        str(minilm_path),
        check=False,
    )
    assert result.returncode == 3  # bad data: an orchestrator does not retry
    assert (
        f"error: 1 bad row(s) in 1 file(s):\n  {source}/train.tsv:8: field 'Quality': must be 0 or 1, got '5'"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-seq-length", "4"], "--max-seq-length must be between 8 and 512, got 4"),
        (["--on-bad-rows", "ignore"], "invalid choice: 'ignore'"),
        (["--validation-fraction", "0.9"], "--validation-fraction must be in (0, 0.5), got 0.9"),
    ],
)
def test_bad_flags_exit_2_with_the_allowed_values(tmp_path, flags, message):
    result = run_tasks("stage", "--source", "x", "--output", str(tmp_path / "o"), *flags, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_stage_arguments_validate_in_process():
    with pytest.raises(ConfigError, match="--max-seq-length"):
        StageArguments(output="x", max_seq_length=1000)


def test_bad_tokenizer_is_a_clear_error(tmp_path, minilm_path):
    source = write_splits(tmp_path / "src", lambda p, pairs: p.write_text(glue_lines(pairs)), ".tsv")
    result = run_tasks(
        "stage",
        "--source",
        str(source),
        "--output",
        str(tmp_path / "o"),
        "--tokenizer",
        str(tmp_path / "nope"),
        check=False,
    )
    assert result.returncode == 1
    assert f"error: {tmp_path / 'nope'}: no such folder" in result.stderr


def test_a_split_left_empty_is_explained(tmp_path, minilm_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.tsv").write_text(glue_lines(PAIRS[1:]))  # no pair of these hashes below 0.1
    with pytest.raises(DataError, match=r"the validation split has no usable rows \(carving 10% of train"):
        stage(tmp_path, folder, minilm_path)
    (folder / "dev.tsv").write_text(glue_lines(DEV) + "4\t1\t2\tA.\tB.\n")
    (folder / "train.tsv").write_text(HEADER + "\n3\t1\t2\tA.\tB.\n")
    with pytest.raises(DataError, match=r"the train split has no usable rows \(2 bad row\(s\) were dropped\)"):
        stage(tmp_path, folder, minilm_path, on_bad_rows="skip")


def test_manifest_is_byte_identical_across_processes(tmp_path, raw_data, minilm_path):
    manifests = []
    for name, hash_seed in (("a", "1"), ("b", "2")):
        output = tmp_path / name
        stage = flags(source=raw_data, output=output, tokenizer=minilm_path)
        run_tasks("stage", *stage, env={"PYTHONHASHSEED": hash_seed})
        manifests.append((output / "manifest.json").read_bytes())
    assert manifests[0] == manifests[1]


SECRET = "TOPSECRET-4b1d9e"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("token.txt", f"aws_secret_access_key={SECRET}\n", "a GLUE/MSR paraphrase header"),
        ("train.tsv", f"{SECRET}\tpassword\n1\t2\n", "a GLUE/MSR paraphrase header"),
        ("train.csv", f"user,{SECRET}\nx,y\n", "missing column(s) 'sentence1', 'sentence2', 'label'"),
        ("train.jsonl", json.dumps({SECRET: "x", "user": "y"}) + "\n", "missing column(s) 'sentence1'"),
        ("train.parquet", f"PAR1{SECRET}PAR1", "cannot read Parquet"),
        (
            "train.csv",
            f'sentence1,sentence2,label\n"{"x" * 140_000}{SECRET}",b,1\n',
            "train.csv: not a readable CSV file after line 1 (field larger than field limit",
        ),
    ],
)
def test_a_file_that_is_not_a_data_set_is_named_never_quoted(tmp_path, name, text, expected):
    """A planted secret file: the error says what was expected of it, and not a byte of it reaches the output."""
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / name).write_text(text)
    result = run_tasks(
        "stage", "--source", str(tmp_path / "secret" / name), "--output", str(tmp_path / "o"), check=False
    )
    assert result.returncode == 3, result.stderr  # bad data, said clearly; no traceback
    assert f"error: {tmp_path}/secret/{name}" in result.stderr and expected in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_values_quoted_from_a_data_file_are_cut_short(tmp_path, minilm_path):
    label = "9" * 5000
    source = make_source(tmp_path, glue_lines(PAIRS) + f"{label}\t1\t2\tA.\tB.\n1\t1\t2\tA.\tB.\tC.\n")
    with pytest.raises(BadRowsError) as caught:
        stage(tmp_path, source, minilm_path)
    assert "field 'Quality': must be 0 or 1, got '99999" in str(caught.value)
    assert "... (5000 characters)" in str(caught.value)
    assert len(str(caught.value)) < 800
