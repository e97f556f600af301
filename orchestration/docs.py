"""Sections of docs/reference.md generated from the code, so the documentation matches it.

    python -m orchestration.docs          rewrite the generated sections
    python -m orchestration.docs --check  exit 1 if they are out of date
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from dogbreed.contract.hyperparameters import markdown_table
from dogbreed.contract.metrics import METRIC_DEFINITIONS, METRICS, OBJECTIVE_METRIC

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"


def metrics_table() -> str:
    rows = ["| metric | meaning | SageMaker regex |", "|---|---|---|"]
    for d in METRIC_DEFINITIONS:
        star = " (objective)" if d["Name"] == OBJECTIVE_METRIC else ""
        rows.append(f"| `{d['Name']}`{star} | {METRICS[d['Name']]} | `{d['Regex']}` |")
    return "\n".join(rows) + "\n"


def rules_table() -> str:
    """The Debugger rules' table (dogbreed.debugger.rules imports smdebug: only when the table is made)."""
    from dogbreed.debugger.rules import rules_table as table

    return table()


SECTIONS = {"hyperparameters": markdown_table, "metrics": metrics_table, "rules": rules_table}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"{REFERENCE.name} has no <!-- {name}:begin/end --> markers")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    current = REFERENCE.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("docs/reference.md's generated sections are out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
