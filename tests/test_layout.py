"""The layout: a few packages with one job each, imports that run downward only, no circle."""

import ast
from pathlib import Path

import hir

PACKAGE = Path(hir.__file__).parent
# Floors from the bottom: a module may import its own floor and the floors below it only.
FLOORS = [
    {"errors", "callables", "options", "cache"},
    {"runs"},
    {"tasks"},
    {"losses"},
    {"models"},
    {"online"},
    {"trainers"},
    {"arguments"},
    {"recipes"},
    {"compare"},
    {"commands"},
    {"cli", "__init__", "__main__"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("hir", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    """Every hir module `path` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hir"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("hir"))
    return names


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_package_root_holds_a_few_modules_and_packages_with_one_job_each():
    root_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root_modules) <= 12, root_modules
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == [
        "commands",
        "compare",
        "losses",
        "models",
        "online",
        "recipes",
        "runs",
        "tasks",
        "trainers",
    ]
    assert set(FLOOR) >= {p.stem for p in PACKAGE.glob("*.py")} | set(packages)


def test_imports_run_downward_only():
    known = modules()
    upward = []
    for name, path in known.items():
        for target in imports_of(path):
            if target in known and FLOOR[room(target)] > FLOOR[room(name)]:
                upward.append(f"{name} -> {target}")
    assert not upward, upward


def test_no_import_circle():
    known = modules()
    graph = {name: {t for t in imports_of(path) if t in known and t != name}
             for name, path in known.items()}  # fmt: skip
    # A package's __init__ re-exports its modules; an edge into a package is an edge into it.
    state: dict[str, int] = {}
    circle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                circle.extend(trail[trail.index(nxt) :] + [nxt])
                return True
            if nxt not in state and visit(nxt, [*trail, nxt]):
                return True
        state[node] = 2
        return False

    for name in graph:
        if name not in state and visit(name, [name]):
            break
    assert not circle, " -> ".join(circle)
