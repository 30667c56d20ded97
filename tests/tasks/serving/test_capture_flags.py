"""serve's capture flags: defaults, ranges, the environment a flag-less server (SageMaker) reads them from."""

import pytest

from tasks.cli import parse
from tasks.config import CAPTURE_DEFAULTS, CAPTURE_ENV, DeployLocalArguments, ServeArguments, flag_schema
from tasks.errors import ConfigError


def test_capture_is_off_by_default_with_the_documented_settings():
    args = parse("serve", [])
    assert args.capture_dir == ""
    assert args.capture_sample_rate == 1.0
    assert args.capture_text is False
    assert args.capture_file_bytes == 16 * 1024 * 1024
    assert args.capture_file_seconds == 300
    assert args.capture_buffer_records == 10_000


def test_the_capture_flags_parse_from_the_command_line():
    args = parse(
        "serve",
        [
            "--capture-dir=s3://bucket/capture/nlp_local",
            "--capture-sample-rate=0.1",
            "--capture-text",
            "--capture-file-bytes=4096",
            "--capture-file-seconds=60",
            "--capture-buffer-records=50",
        ],
    )
    assert (args.capture_dir, args.capture_sample_rate, args.capture_text) == (
        "s3://bucket/capture/nlp_local",
        0.1,
        True,
    )
    assert (args.capture_file_bytes, args.capture_file_seconds, args.capture_buffer_records) == (4096, 60, 50)


class Started:
    pid = 1234


@pytest.mark.parametrize("text", [True, False])
def test_deploy_local_starts_its_server_with_its_capture_flags(monkeypatch, tmp_path, text):
    """The endpoint deploy-local starts parses the flags it is given back into the same capture settings."""
    from tasks.endpoint import commands

    started = []
    monkeypatch.setattr(commands, "_require_free_port", lambda host, port: None)
    monkeypatch.setattr(commands, "spawn_server", lambda flags, output, detached: started.append(flags) or Started())
    monkeypatch.setattr(commands, "wait_ready", lambda *arguments: "v1")
    argv = ["--model=/m", f"--state={tmp_path}", "--capture-dir=/c", "--capture-sample-rate=0.5"]
    args = parse("deploy-local", argv + (["--capture-text"] if text else []))
    assert isinstance(args, DeployLocalArguments)
    commands._start(args, "/m", tmp_path)
    served = parse("serve", started[0])
    assert (served.capture_dir, served.capture_sample_rate, served.capture_text) == ("/c", 0.5, text)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--capture-sample-rate=0", r"--capture-sample-rate must be in \(0, 1\], got 0.0"),
        ("--capture-sample-rate=1.5", r"--capture-sample-rate must be in \(0, 1\], got 1.5"),
        ("--capture-file-bytes=100", "--capture-file-bytes must be 1024 or more, got 100"),
        ("--capture-file-seconds=0", "--capture-file-seconds must be between 1 and 3600, got 0"),
        ("--capture-file-seconds=7200", "--capture-file-seconds must be between 1 and 3600, got 7200"),
        ("--capture-buffer-records=0", "--capture-buffer-records must be a positive integer, got 0"),
        ("--capture-dir=gs://bucket/capture", "--capture-dir must be empty, a local folder or s3://bucket/prefix"),
    ],
)
def test_a_bad_capture_flag_is_refused_naming_it(flag, message):
    with pytest.raises(ConfigError, match=message):
        parse("serve", [flag])


def test_a_server_started_without_flags_takes_its_capture_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv(CAPTURE_ENV["capture_dir"], "s3://bucket/capture/nlp_sagemaker")
    monkeypatch.setenv(CAPTURE_ENV["capture_sample_rate"], "0.25")
    monkeypatch.setenv(CAPTURE_ENV["capture_text"], "true")
    args = parse("serve", [])
    assert (args.capture_dir, args.capture_sample_rate, args.capture_text) == (
        "s3://bucket/capture/nlp_sagemaker",
        0.25,
        True,
    )


def test_a_flag_given_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(CAPTURE_ENV["capture_dir"], "/from/environment")
    monkeypatch.setenv(CAPTURE_ENV["capture_sample_rate"], "0.25")
    args = parse("serve", ["--capture-dir=/from/flag", "--capture-sample-rate=0.5"])
    assert (args.capture_dir, args.capture_sample_rate) == ("/from/flag", 0.5)


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("capture_sample_rate", "0", r"NLP_CAPTURE_SAMPLE_RATE must be in \(0, 1\], got '0'"),
        ("capture_sample_rate", "half", r"NLP_CAPTURE_SAMPLE_RATE must be in \(0, 1\], got 'half'"),
        ("capture_text", "maybe", "NLP_CAPTURE_TEXT must be true or false, got 'maybe'"),
        ("capture_dir", "gs://bucket", "--capture-dir must be empty, a local folder or s3://"),
    ],
)
def test_a_bad_environment_value_is_refused_naming_the_variable(monkeypatch, name, given, message):
    monkeypatch.setenv(CAPTURE_ENV[name], given)
    with pytest.raises(ConfigError, match=message):
        ServeArguments()


def test_the_sample_rate_schema_gives_a_form_the_flag_s_range():
    schema = flag_schema(ServeArguments, "capture_sample_rate")
    assert (schema["exclusiveMinimum"], schema["maximum"], schema["default"]) == (0, 1, None)
    assert CAPTURE_DEFAULTS["capture_sample_rate"] == 1.0, "not given: the environment's, else this"


def test_a_flag_given_at_its_default_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(CAPTURE_ENV["capture_sample_rate"], "0.1")
    monkeypatch.setenv(CAPTURE_ENV["capture_dir"], "/from/environment")
    assert ServeArguments(capture_sample_rate=1.0).capture_sample_rate == 1.0
    assert parse("serve", ["--capture-sample-rate=1"]).capture_sample_rate == 1.0
    assert ServeArguments(capture_dir="").capture_dir == "", "capture said off stays off"
    assert ServeArguments().capture_sample_rate == 0.1 and ServeArguments().capture_dir == "/from/environment"


def test_capture_text_can_be_said_off_against_the_environment(monkeypatch):
    """Privacy: a server told not to keep text keeps none, whatever its environment says."""
    monkeypatch.setenv(CAPTURE_ENV["capture_text"], "true")
    assert parse("serve", ["--no-capture-text"]).capture_text is False
    assert ServeArguments(capture_text=False).capture_text is False
    assert parse("serve", []).capture_text is True
    monkeypatch.delenv(CAPTURE_ENV["capture_text"])
    assert ServeArguments().capture_text is False and ServeArguments().capture_sample_rate == 1.0


def test_deploy_local_says_its_capture_settings_whatever_the_servers_environment(monkeypatch, tmp_path):
    from tasks.endpoint import commands

    started = []
    monkeypatch.setattr(commands, "_require_free_port", lambda host, port: None)
    monkeypatch.setattr(commands, "spawn_server", lambda flags, output, detached: started.append(flags) or Started())
    monkeypatch.setattr(commands, "wait_ready", lambda *arguments: "v1")
    commands._start(parse("deploy-local", ["--model=/m", f"--state={tmp_path}"]), "/m", tmp_path)
    for name, value in (("capture_dir", "/elsewhere"), ("capture_sample_rate", "0.1"), ("capture_text", "true")):
        monkeypatch.setenv(CAPTURE_ENV[name], value)
    served = parse("serve", started[0])
    assert (served.capture_dir, served.capture_sample_rate, served.capture_text) == ("", 1.0, False)
