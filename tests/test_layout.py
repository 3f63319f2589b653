"""DESIGN.md's arrows, enforced: `web`, `chat` -> `classroom` -> `storage`; `web`, `chat` ->
`protocol`; nothing imports `web` or `chat` except start-up code."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parent.parent
OURS: Final = frozenset({"protocol", "storage", "classroom", "web", "chat"})
MAY_IMPORT: Final = {
    "protocol": frozenset(),
    "storage": frozenset(),
    "classroom": frozenset({"storage"}),
    "web": frozenset({"protocol", "classroom"}),
    "chat": frozenset({"protocol", "classroom"}),
}
# Start-up code: the one place that wires the listeners together.
START_UP: Final = {
    "classroom/startup.py": frozenset({"protocol", "web", "chat"}),
    "classroom/cli.py": frozenset({"chat"}),
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & OURS
    return found


@pytest.mark.parametrize("package", sorted(OURS))
def test_each_package_imports_only_what_the_design_allows(package: str) -> None:
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        allowed = MAY_IMPORT[package] | START_UP.get(relative, frozenset()) | {package}
        extra = imported_packages(path) - allowed
        if extra:
            wrong[relative] = sorted(extra)
    assert not wrong, f"imports against DESIGN.md's arrows: {wrong}"
