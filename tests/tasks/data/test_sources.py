"""The allow-list of data sources: prefixes match on whole, normalised path segments, and ``stage`` refuses a
source outside it (exit 2) before reading a byte of it."""

import json
import os

import pytest

from tasks.config import StageArguments
from tasks.data.sources import check_source, is_allowed, parse_prefixes
from tasks.data.stage import run
from tasks.errors import ConfigError
from tests.conftest import run_tasks
from tests.tasks.data.test_stage_formats import DEV, PAIRS, glue_lines

SECRET = "TOPSECRET-7f3a9c"


@pytest.mark.parametrize(
    ("source", "prefix", "allowed"),
    [
        ("hf://nyu-mll/glue/mrpc", "hf://", True),
        ("hf://nyu-mll/glue/mrpc", "hf://nyu-mll/glue", True),
        ("hf://nyu-mll/glue/mrpc", "hf://nyu-mll/gl", False),
        ("hf://nyu-mll/glue2/mrpc", "hf://nyu-mll/glue", False),
        ("s3://my-bucket/data/raw/", "s3://my-bucket/data/", True),
        ("s3://my-bucket/data", "s3://my-bucket/data/", True),
        ("s3://my-bucket/database/raw", "s3://my-bucket/data/", False),
        ("s3://bucket-other/data", "s3://bucket", False),
        ("s3://bucket/data", "s3://", True),
        ("s3://bucket/data", "hf://", False),
        ("gs://bucket/data", "s3://bucket", False),
        ("simplecache::s3://bucket/data", "s3://bucket", False),
    ],
)
def test_uri_prefixes_match_on_whole_segments(source, prefix, allowed):
    assert is_allowed(source, [prefix]) is allowed


@pytest.mark.parametrize("source", ["s3://bucket/data/../secret", "s3://bucket/./data", "hf://nyu-mll/../x/y"])
def test_a_uri_with_dot_segments_is_refused(source):
    with pytest.raises(ConfigError, match=r"'\.' or '\.\.' path segment"):
        check_source(source, ["s3://bucket/data", "hf://"])


@pytest.fixture
def folders(tmp_path):
    """An allowed folder, a folder beside it that shares its name as a prefix, and a secret outside both."""
    allowed, beside, secret = tmp_path / "data", tmp_path / "data2", tmp_path / "secret"
    for folder in (allowed, beside, secret):
        folder.mkdir()
    (secret / "train.tsv").write_text(f"{SECRET}\n")
    return allowed, beside, secret


def test_local_prefixes_match_resolved_paths(folders, monkeypatch):
    allowed, beside, secret = folders
    (allowed / "sub").mkdir()
    (allowed / "link").symlink_to(secret)
    prefixes = [str(allowed)]
    assert is_allowed(str(allowed / "sub"), prefixes)
    assert is_allowed(f"file://{allowed}/sub", prefixes)
    assert is_allowed(str(allowed), [f"{allowed}/"])
    assert not is_allowed(str(beside), prefixes), "data2 is not under data"
    assert not is_allowed(f"{allowed}/../secret", prefixes), ".. leads out"
    assert not is_allowed(str(allowed / "link"), prefixes), "a symlink leads out"
    assert not is_allowed(f"file://{allowed}/../secret", prefixes)
    monkeypatch.chdir(allowed)
    assert is_allowed("./sub", prefixes) and not is_allowed("../secret", prefixes)
    # A prefix is resolved too: an allow-list naming a link allows where it leads.
    assert is_allowed(str(secret), [str(allowed / "link")])


def test_a_refusal_names_the_source_where_it_leads_and_the_prefixes(folders):
    allowed, _, secret = folders
    (allowed / "link").symlink_to(secret)
    with pytest.raises(ConfigError) as caught:
        check_source(str(allowed / "link"), [str(allowed), "hf://"])
    assert str(caught.value) == (
        f"--source '{allowed}/link' (which resolves to {secret}) is outside the allowed sources: {allowed}, hf://; "
        "stage from a location under one of them, or have the allow-list extended"
    )


def test_no_prefixes_restrict_nothing():
    assert is_allowed("/etc", []) and is_allowed("s3://any/thing", [])


@pytest.mark.parametrize(
    ("prefixes", "message"),
    [
        ("hf://", "must be a list of non-empty prefixes"),
        (["hf://", ""], "must be a list of non-empty prefixes"),
        (["data/raw"], "'data/raw' is a relative path; a local prefix is an absolute folder"),
        (["://bucket"], "'://bucket' has no scheme"),
        (["s3://bucket/../other"], "'s3://bucket/../other' has a '.' or '..' path segment"),
    ],
)
def test_bad_prefixes_are_refused_naming_where_they_came_from(prefixes, message):
    for where, refuse in (
        ("the Variable x", lambda: parse_prefixes(prefixes, "the Variable x")),
        ("--allowed-sources", lambda: StageArguments(output="o", allowed_sources=prefixes)),
    ):
        with pytest.raises(ConfigError) as caught:
            refuse()
        assert str(caught.value).startswith(where) and message in str(caught.value)


def test_stage_refuses_a_source_outside_the_allow_list_before_reading_it(folders, tmp_path):
    allowed, _, secret = folders
    result = run_tasks(
        "stage",
        "--source",
        f"{allowed}/../secret",
        "--output",
        str(tmp_path / "out"),
        "--allowed-sources",
        str(allowed),
        "hf://",
        check=False,
    )
    assert result.returncode == 2, result.stderr  # a bad flag: an orchestrator does not retry
    assert (
        f"error: --source '{allowed}/../secret' (which resolves to {secret}) is outside the allowed sources: "
        f"{allowed}, hf://" in result.stderr
    )
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_file_in_an_allowed_folder_that_links_out_is_refused(folders, tmp_path, minilm_path):
    allowed, _, secret = folders
    (allowed / "train.tsv").write_text(glue_lines(PAIRS))
    (allowed / "dev.tsv").symlink_to(secret / "train.tsv")
    arguments = StageArguments(
        output=str(tmp_path / "out"), source=str(allowed), tokenizer=str(minilm_path), allowed_sources=[str(allowed)]
    )
    with pytest.raises(ConfigError, match=f"'{allowed}/dev.tsv' \\(which resolves to {secret}/train.tsv\\)") as caught:
        run(arguments)
    assert SECRET not in str(caught.value)


def test_stage_reads_a_source_inside_the_allow_list(folders, tmp_path, minilm_path):
    allowed, _, _ = folders
    (allowed / "train.tsv").write_text(glue_lines(PAIRS))
    (allowed / "dev.tsv").write_text(glue_lines(DEV))
    output = tmp_path / "out"
    run_tasks(
        "stage",
        "--source",
        str(allowed),
        "--output",
        str(output),
        "--tokenizer",
        str(minilm_path),
        "--allowed-sources",
        f"{os.path.dirname(allowed)}/",
    )
    assert json.loads((output / "manifest.json").read_text())["splits"]["train"]["rows"] == len(PAIRS)
