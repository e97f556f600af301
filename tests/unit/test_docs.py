"""The documentation matches the code: generated sections are current, the commands are the real
ones, the README stays short, and every relative link points at a file (and heading) that exists."""

import re
from pathlib import Path

import pytest

from orchestration import docs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "reference.md").read_text()
README_MAX_WORDS = 2500
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_generated_sections_are_current():
    assert docs.REFERENCE == ROOT / "docs" / "reference.md"
    assert docs.render(REFERENCE) == REFERENCE, "run `make docs`"
    assert docs.main(["--check"]) == 0


@pytest.mark.parametrize("section", list(docs.SECTIONS))
def test_a_stale_table_is_caught(section):
    begin, end = f"<!-- {section}:begin -->\n", f"<!-- {section}:end -->"
    head, rest = REFERENCE.split(begin, 1)
    table, tail = rest.split(end, 1)
    stale = head + begin + table.replace("|", "| stale", 1) + end + tail
    assert stale != REFERENCE
    assert docs.render(stale) == REFERENCE  # rendering restores it, so --check would fail


def test_the_generated_sections_live_in_the_reference_only():
    for name in docs.SECTIONS:
        assert f"<!-- {name}:begin -->" in REFERENCE
        assert f"<!-- {name}:begin -->" not in README


def test_the_two_commands_are_the_ones_ci_and_make_run():
    block = re.search(r"## On a fresh machine: two commands\n\n```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["make demo", "make test"]
    assert re.search(r"^exec make test\b", (ROOT / ".ci" / "run").read_text(), re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)


def test_the_readme_is_short():
    words = len(README.split())  # what `wc -w` counts: code blocks included
    assert words <= README_MAX_WORDS, f"README.md has {words} words; move detail into docs/"


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (code blocks skipped)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(text: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_github_anchors_follow_githubs_rules():
    assert github_anchors("## Local quick start: `make demo`\n## A, B\n## A, B\n") == {
        "local-quick-start-make-demo", "a-b", "a-b-1"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files_and_headings(doc):
    text = doc.read_text()
    broken = []
    for target in relative_links(text):
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in github_anchors(file.read_text()):
            broken.append(f"{target}: no such heading in {file.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)
