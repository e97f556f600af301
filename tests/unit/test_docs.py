"""The README matches the code: generated sections are current, the commands are the real ones."""

import re
from pathlib import Path

from orchestration import docs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_generated_sections_are_current():
    assert docs.render(README) == README, "run `make docs`"


def test_the_two_commands_are_the_ones_ci_and_make_run():
    block = re.search(r"## On a fresh machine: two commands\n\n```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["make demo", "make test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec make test")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
