"""The options and defaults the docs give for `dogctl` are the parser's.

README.md's `dogctl` table has one row per verb, its options written `--option` or, with the
parser's default, `--option=DEFAULT`. docs/usage.md has a section per verb (`### \\`dogctl VERB\\``)
whose table lists every option; a default cell written as one code span (`20`) is the parser's
default, anything else is prose about defaults that come from elsewhere.
"""

import argparse
import re
from pathlib import Path

import pytest

from orchestration import cli

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()
USAGE = (ROOT / "docs" / "usage.md").read_text()
COMMON = "Options of the `--sagemaker` verbs"


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    with pytest.MonkeyPatch.context() as mp:  # the parser reads these for two defaults
        mp.delenv("DOGCTL_RUNNER", raising=False)
        mp.delenv("DOGCTL_LOCAL_IMAGE", raising=False)
        return cli.build_parser()


def verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings if s not in ("-h", "--help")}


def same_default(documented: str, action: argparse.Action) -> bool:
    return documented == str(action.default)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"\|[-| ]+\|$", line):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([c.strip() for c in cells])
    return rows


def readme_table() -> dict[str, str]:
    """verb -> its 'main options' cell, from the README's `dogctl` at a glance table."""
    section = README.split("## `dogctl` at a glance", 1)[1].split("\n## ", 1)[0]
    rows = table_rows(section)
    assert rows[0] == ["verb", "what it does", "main options"]
    return {re.fullmatch(r"`(\w+)`", r[0]).group(1): r[2] for r in rows[1:]}


def usage_sections() -> dict[str, str]:
    """'--workdir' (the global table), COMMON, or a verb -> that section's text."""
    part = USAGE.split("## dogctl verbs and options", 1)[1].split("\n## ", 1)[0]
    sections = {"global": part.split("\n### ", 1)[0]}
    for chunk in part.split("\n### ")[1:]:
        title, _, body = chunk.partition("\n")
        verb = re.match(r"`dogctl (\w+)", title)
        sections[verb.group(1) if verb else title.strip()] = body
    return sections


def usage_options(body: str) -> dict[str, str]:
    """option -> its default cell, from a section's `| option | default | meaning |` table."""
    rows = table_rows(body)
    assert rows and rows[0] == ["option", "default", "meaning"], rows[:1]
    found = {}
    for option, default, _ in rows[1:]:
        for name in re.findall(r"`(--[a-z][a-z-]*)", option):
            found[name] = default
    return found


def test_the_readme_has_one_row_per_verb(parser):
    assert sorted(readme_table()) == sorted(verbs(parser))


def test_the_readme_options_exist_with_their_defaults(parser):
    wrong = []
    for verb, cell in readme_table().items():
        known = options(verbs(parser)[verb])
        for name, default in re.findall(r"`(--[a-z][a-z-]*)(?:=([^`]+))?`", cell):
            if name not in known:
                wrong.append(f"dogctl {verb} has no {name}")
            elif default and not same_default(default, known[name]):
                wrong.append(f"dogctl {verb} {name}: README says {default}, parser {known[name].default!r}")
    assert not wrong


def test_the_readme_names_the_global_default(parser):
    match = re.search(r"dogctl \[--workdir=(\S+?)\]", README)
    assert match and same_default(match.group(1), options(parser)["--workdir"])


def test_usage_documents_every_verb_and_every_option(parser):
    sections = usage_sections()
    common = usage_options(sections[COMMON])
    missing = []
    for verb, sub in verbs(parser).items():
        assert verb in sections, f"docs/usage.md has no section for dogctl {verb}"
        body = sections[verb]
        documented = usage_options(body) if "| option |" in body else {}
        for name in options(sub):
            if name not in documented and name not in common:
                missing.append(f"dogctl {verb} {name}")
    assert not missing, "undocumented in docs/usage.md: " + ", ".join(missing)


def test_usage_options_exist_with_their_defaults(parser):
    sections = usage_sections()
    every = verbs(parser)
    wrong = []
    checks = [("global", parser)] + [(v, p) for v, p in every.items()]
    for verb, p in checks:
        body = sections[verb]
        if "| option |" not in body:
            continue
        known = options(p)
        for name, default in usage_options(body).items():
            if name not in known:
                wrong.append(f"{verb}: no option {name}")
                continue
            code = re.fullmatch(r"`([^`]+)`", default)
            if code and not same_default(code.group(1), known[name]):
                wrong.append(f"{verb} {name}: docs say {code.group(1)}, parser {known[name].default!r}")
    for name in usage_options(sections[COMMON]):
        if not any(name in options(p) for p in every.values()):
            wrong.append(f"no verb has {name}")
    assert not wrong


def test_the_defaults_users_ask_about(parser):
    """The figures the README and docs quote in prose, pinned here so a change updates them."""
    every = verbs(parser)
    assert options(every["invoke"])["--top-k"].default == 3
    assert options(every["deploy"])["--port"].default == 8080
    assert options(every["tune"])["--trials"].default == 20
    assert options(every["tune"])["--parallel"].default == 2
    assert options(every["train"])["--debugger"].default == "container"
    from dogbreed.serve.payloads import DEFAULT_TOP_K

    assert DEFAULT_TOP_K == 5  # the server's default: reference.md and README say 5
    assert "server returns 5 breeds" in README and "**5**" in (ROOT / "docs" / "reference.md").read_text()
