"""The project's import graph, from the source (ast): who imports whom, at the top of a module or
lazily inside a function, and the imports that cross between the two dogctl backends.

    python .ci/import_graph.py [--mermaid]

``--mermaid`` draws dogctl's side: the orchestration modules, with the container package as one node.

Written by hand (40 lines) because pydeps draws with Graphviz and counts no backend crossings.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"dogbreed": ROOT / "container" / "dogbreed", "orchestration": ROOT / "orchestration"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def edges(name: str, path: Path, known: set[str]) -> set[tuple[str, str, bool]]:
    """(importer, imported, lazy) for every import of a project module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + [base]).strip(".")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add((name, target, id(node) not in top))
    return out


# Before the redesign the backends were flat modules: these were the local backend's.
FLAT_LOCAL = {"orchestration.local", "orchestration.runner", "orchestration.endpoint", "orchestration.tuning"}


def backend(module: str, flat: bool) -> str | None:
    """'local', 'sagemaker' or None (shared) for a module of either layout."""
    if (flat and module in FLAT_LOCAL) or module.startswith("orchestration.local"):
        return "local"
    if module.startswith(("orchestration.sagemaker", "orchestration.aws")):
        return "sagemaker"
    return None


def main() -> int:
    found = modules()
    graph = sorted(e for name, path in found.items() for e in edges(name, path, set(found)))
    if "--mermaid" in sys.argv:
        print("graph LR")
        drawn = set()
        for a, b, lazy in graph:
            if not a.startswith("orchestration"):
                continue
            b = b if b.startswith("orchestration") else "dogbreed"
            if (a, b) not in drawn:
                drawn.add((a, b))
                print(f"  {a.replace('.', '_')}[{a}] {'-.->' if lazy else '-->'} {b.replace('.', '_')}[{b}]")
        return 0
    for a, b, lazy in graph:
        print(f"{a} -> {b}{'  (lazy)' if lazy else ''}")
    flat = "orchestration.local.training" not in found  # the layout before the two backend packages

    def kind(module: str) -> str | None:
        return backend(module, flat)

    crossing = [(a, b) for a, b, _ in graph if kind(a) and kind(b) and kind(a) != kind(b)]
    upward = [(a, b) for a, b, _ in graph if a.startswith("dogbreed") and b.startswith("orchestration")]
    print(f"\n{len(found)} modules, {len(graph)} imports; cross-backend imports: {len(crossing)}; "
          f"container package importing orchestration: {len(upward)}")
    for a, b in crossing:
        print(f"  crossing: {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
