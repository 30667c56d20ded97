"""The documentation stays a map of this repository: the README a short front page, every link and image in
README.md and docs/ resolving to a file here (and a heading there), no pointer outside the repository, every
`make` target a real one, every repository path in code spans an existing one, and every step's flags listed in
docs/operations.md exactly as the CLI defines them."""

import re
from dataclasses import MISSING, fields
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 250

FENCED_BLOCK = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n.*?^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# [text](target "title") and ![alt](target); the text may hold one level of brackets, e.g. [`x[0]`](y).
MARKDOWN_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=[\"']([^\"']+)[\"']", re.IGNORECASE)
AUTOLINK = re.compile(r"<((?:https?|file)://[^>\s]+)>")
BARE_URL = re.compile(r"(?<![\w(<\"'])(?:https?|file)://[^\s)>\]`\"']+")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# Hosts a link may leave the repository for: the upstream projects' public documentation.
PUBLIC_DOCS = (
    "airflow.apache.org",
    "docs.aws.amazon.com",
    "aws.amazon.com",
    "kubernetes.io",
    "intel.github.io",
    "github.com/intel/neural-compressor",
    "kubernetes-sigs.github.io",
    "www.kubeflow.org",
    "docs.docker.com",
    "www.tensorflow.org",
    "huggingface.co",
    "playwright.dev",
)
# Addresses of services this project runs, written in prose: not links out of the repository.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "minio")
# Places outside the repository the documentation must not send a reader to.
OUTSIDE = re.compile(r"\.\./shared|/work/|DESIGN\.md|file://")
# "see README, X", "(README, Deploy)", "README section X": a section named instead of linked.
README_SECTION = re.compile(r"\(README,|\bREADME section\b|\bsee (?:the )?README\b(?!\.md\]| \[)", re.IGNORECASE)
MAKE_TARGET = re.compile(r"\bmake ([a-z][\w-]*)")
REPOSITORY_PATH = re.compile(r"(?<![\w./$-])((?:tasks|plugins|dags|docker|bench|tests|docs)/[\w./-]*)")


def without_code(text: str) -> str:
    return CODE_SPAN.sub("", FENCED_BLOCK.sub("", text))


def code_of(text: str) -> list[str]:
    """The text of every fenced block and code span: where commands and paths are written."""
    blocks = [match.group(0) for match in FENCED_BLOCK.finditer(text)]
    spans = [match.group(2) for match in CODE_SPAN.finditer(FENCED_BLOCK.sub("", text))]
    return blocks + spans


def links(text: str) -> list[str]:
    prose = without_code(text)
    found = [m.group(1) for pattern in (MARKDOWN_LINK, HTML_LINK, AUTOLINK) for m in pattern.finditer(prose)]
    return found + BARE_URL.findall(MARKDOWN_LINK.sub("", HTML_LINK.sub("", AUTOLINK.sub("", prose))))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    # HTML tags drop out, except inside code spans, where `<step>` is text.
    parts = re.split(r"(`[^`]*`)", text)
    text = "".join(part.strip("`") if part.startswith("`") else re.sub(r"<[^>]+>", "", part) for part in parts)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    found, seen = set(), {}
    for match in HEADING.finditer(FENCED_BLOCK.sub("", page.read_text())):
        base = slug(match.group(2))
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def relative(page: Path) -> str:
    return str(page.relative_to(REPO))


def make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, re.MULTILINE))


pages = pytest.mark.parametrize("page", PAGES, ids=relative)


def test_the_readme_is_a_front_page():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}: move detail to docs/"


def test_the_readme_gives_exactly_two_commands():
    section = re.search(r"^## Two commands\n(.*?)(?=^## |\Z)", README.read_text(), re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Two commands' section"
    block = FENCED_BLOCK.search(section.group(1))
    commands = [line.split("#")[0].strip() for line in block.group(0).splitlines()[1:-1]] if block else []
    commands = [command for command in commands if command]
    assert commands == ["make demo", "make test"], f"'Two commands' lists {commands}: exactly make demo and make test"


def test_every_page_under_docs_is_linked_from_the_readme():
    linked = {(README.parent / unquote(urlsplit(target).path)).resolve() for target in links(README.read_text())}
    orphans = [relative(page) for page in PAGES[1:] if page.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link to: {orphans}"


@pages
def test_relative_links_and_images_resolve(page):
    broken = []
    for target in links(page.read_text()):
        address = urlsplit(target)
        if address.scheme or address.netloc or target.startswith("mailto:"):
            continue
        path = unquote(address.path)
        if path.startswith("/"):
            broken.append(f"{target}: an absolute path; link relative to {relative(page)}")
            continue
        destination = (page.parent / path).resolve() if path else page
        if not destination.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif not destination.exists():
            broken.append(f"{target}: no such file")
        elif address.fragment and destination.suffix == ".md" and address.fragment not in anchors(destination):
            broken.append(f"{target}: {relative(destination)} has no heading #{address.fragment}")
    assert not broken, f"{relative(page)}: " + "; ".join(broken)


@pages
def test_links_leave_the_repository_only_for_public_upstream_docs(page):
    external = []
    for target in links(page.read_text()):
        address = urlsplit(target)
        if address.scheme in ("http", "https"):
            host_and_path = f"{address.hostname}{address.path}"
            if address.hostname not in LOCAL_HOSTS and not host_and_path.startswith(PUBLIC_DOCS):
                external.append(target)
        elif address.scheme:
            external.append(target)
    assert not external, f"{relative(page)} links outside the repository to {external}; allowed: {PUBLIC_DOCS}"


@pages
def test_no_text_points_outside_the_repository_or_names_a_readme_section(page):
    text = page.read_text()
    outside = sorted({match.group(0) for match in OUTSIDE.finditer(text)})
    assert not outside, f"{relative(page)} points outside the repository: {outside}"
    named = [line.strip() for line in text.splitlines() if README_SECTION.search(line)]
    assert not named, f"{relative(page)} names a README section instead of linking a docs page: {named}"


@pages
def test_make_targets_exist(page):
    targets = make_targets()
    mentioned = {target for code in code_of(page.read_text()) for target in MAKE_TARGET.findall(code)}
    assert mentioned <= targets, f"{relative(page)} mentions make targets the Makefile lacks: {mentioned - targets}"


@pages
def test_repository_paths_in_code_exist(page):
    paths = {match.rstrip(".,:;") for code in code_of(page.read_text()) for match in REPOSITORY_PATH.findall(code)}
    missing = sorted(path for path in paths if not (REPO / path).exists())
    assert not missing, f"{relative(page)} names paths that do not exist: {missing}"


def test_operations_lists_every_flag_of_every_step():
    """docs/operations.md has a section per step, headed ### `step`, listing its flags as `--kebab-case`."""
    from tasks.cli import STEPS

    text = (REPO / "docs" / "operations.md").read_text()
    sections = dict(re.findall(r"^### `([\w-]+)`\n(.*?)(?=^#{1,3} |\Z)", text, re.MULTILINE | re.DOTALL))
    wrong = {}
    for name, step in STEPS.items():
        defaults = {f"--{field.name.replace('_', '-')}": default_cell(field) for field in fields(step.arguments)}
        listed = set(re.findall(r"`(--[a-z][a-z0-9-]*)", sections.get(name, "")))
        table = dict(re.findall(r"^\| `(--[a-z][a-z0-9-]*)` \| ([^|]*?) \|", sections.get(name, ""), re.MULTILINE))
        stale = {flag: (cell, defaults[flag]) for flag, cell in table.items() if cell != defaults.get(flag, cell)}
        if name not in sections or set(defaults) ^ listed or stale:
            wrong[name] = {"missing": set(defaults) - listed, "unknown": listed - set(defaults), "stale": stale}
    assert not wrong, f"docs/operations.md and the CLI disagree on flags (stale: documented, actual default): {wrong}"


def default_cell(field) -> str:
    """A flag's default as the tables in docs/operations.md write it."""
    if field.default is MISSING and field.default_factory is MISSING:
        return "required"
    default = field.default_factory() if field.default is MISSING else field.default
    return "none" if default in ("", []) else f"`{default}`"
