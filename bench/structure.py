"""The package's structure drawn from its imports: modules, lines, floors, circles, imports that climb.

    python bench/structure.py            # the picture, as text
    python bench/structure.py --table    # the module table of docs/architecture.md (markdown)

Every ``import agelab...`` and ``from agelab... import ...`` counts, at module level and inside
functions alike (a lazy import is still a dependency). A module's floor is 0 when it imports no
other agelab module at module level, else one above the highest module it imports there; an import
"climbs back up" when its target stands on the importer's floor or above (only a lazy import can,
since module-level imports define the floors). A circle is a set of modules that reach each other
through any imports. ``tests/test_imports.py`` fails on any circle.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "agelab"
LONG_MODULE = 400


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    docstring: str
    # target module -> True when at least one import of it is at module level
    imports: dict[str, bool] = field(default_factory=dict)
    external: set[str] = field(default_factory=set)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]
) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    # ``from agelab import models`` imports a submodule; ``from agelab.x import f`` imports x.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def read_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of the package with its agelab imports (module level or lazy) and external ones."""
    paths = sorted((root / package).rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    modules: dict[str, Module] = {}
    for path in paths:
        name = module_name(path, root)
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        module = Module(name, path, len(source.splitlines()), ast.get_docstring(tree) or "")
        top_level = {id(n) for n in tree.body}
        # Imports under a module-level if/try still run at import time.
        for stmt in tree.body:
            if isinstance(stmt, (ast.If, ast.Try)):
                top_level |= {id(n) for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, name, path.name == "__init__.py", known):
                inside = _resolve(target, known)
                if inside is None:
                    module.external.add(target.split(".")[0])
                    continue
                if inside == name or name.startswith(inside + ".") and inside == PACKAGE:
                    continue  # the package's own __init__ (settings before keras) is everyone's root
                if inside == PACKAGE:
                    continue
                module.imports[inside] = module.imports.get(inside, False) or id(node) in top_level
        modules[name] = module
    return modules


def circles(modules: dict[str, Module]) -> list[list[str]]:
    """Sets of modules that import each other, through any imports (Tarjan's strongly connected
    components of more than one module, or one that imports itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in modules[v].imports:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


def floors(modules: dict[str, Module]) -> dict[str, int]:
    """Each module's floor from its module-level imports (a circle there shares one floor)."""
    top = {n: [t for t, at_top in m.imports.items() if at_top] for n, m in modules.items()}
    floor: dict[str, int] = {}
    visiting: set[str] = set()

    def of(name: str) -> int:
        if name in floor:
            return floor[name]
        if name in visiting:  # a module-level circle: break it here
            return 0
        visiting.add(name)
        floor[name] = max((of(t) + 1 for t in top[name]), default=0)
        visiting.discard(name)
        return floor[name]

    for name in sorted(modules):
        of(name)
    return floor


def climbing(modules: dict[str, Module], floor: dict[str, int]) -> list[tuple[str, str]]:
    """Imports whose target stands on the importer's floor or above."""
    return sorted(
        (name, target) for name, m in modules.items() for target in m.imports if floor[target] >= floor[name]
    )


def concept(docstring: str) -> str:
    """A module's docstring's first sentence, for the module table."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.])\s+(?=[A-Z`(:])", paragraph, maxsplit=1)[0]
    return sentence.replace("|", "\\|") or "(no docstring)"


def table(modules: dict[str, Module], floor: dict[str, int]) -> str:
    lines = ["| module | floor | what it holds (its docstring's first sentence) |", "|---|---:|---|"]
    for name in sorted(modules):
        m = modules[name]
        lines.append(f"| `{name}` | {floor[name]} | {concept(m.docstring)} |")
    return "\n".join(lines)


def report(modules: dict[str, Module]) -> str:
    floor = floors(modules)
    lazy = sum(1 for m in modules.values() for at_top in m.imports.values() if not at_top)
    out = [
        f"modules: {len(modules)}, lines: {sum(m.lines for m in modules.values())}, "
        f"agelab imports: {sum(len(m.imports) for m in modules.values())} ({lazy} only inside functions)",
        "",
        "floors (from module-level imports):",
    ]
    for level in range(max(floor.values()) + 1):
        names = sorted(n for n in modules if floor[n] == level)
        out.append(f"  {level}: " + ", ".join(names))
    up = climbing(modules, floor)
    dispatch = [(a, b) for a, b in up if a in ("agelab.cli", "agelab.__main__")]
    rest = [(a, b) for a, b in up if (a, b) not in dispatch]
    out += ["", f"imports that climb back up: {len(up)} ({len(dispatch)} of them the verb dispatcher's)"]
    out += [f"  {a} ({floor[a]}) -> {b} ({floor[b]})" for a, b in rest]
    found = circles(modules)
    out += ["", f"import circles: {len(found)}"]
    out += [f"  {len(c)} modules: {', '.join(c)}" for c in found]
    streamlit = sorted(n for n, m in modules.items() if "streamlit" in m.external)
    out += ["", f"modules importing streamlit: {len(streamlit)} {', '.join(streamlit)}"]
    long = sorted(((m.lines, n) for n, m in modules.items() if m.lines > LONG_MODULE), reverse=True)
    out += ["", f"modules over {LONG_MODULE} lines: {len(long)}"]
    out += [f"  {n}: {lines}" for lines, n in long]
    out += ["", "lines per module:"]
    out += [f"  {n:<36} {modules[n].lines:>5}" for n in sorted(modules)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="print the markdown module table")
    args = parser.parse_args(argv)
    modules = read_modules()
    print(table(modules, floors(modules)) if args.table else report(modules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
