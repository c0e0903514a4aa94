"""Pin the layering: actors never import engine or transports; transports use only the
public engine API."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "triomem"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            else:
                found.add(node.module or "")
    return found


def test_actors_never_import_engine_or_transports() -> None:
    for path in (ROOT / "actors").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("triomem.engine", "triomem.transports",
                                                          "triomem.remotes"))}
        assert not bad, f"{path.name} imports {bad}"


def test_transports_use_only_the_public_engine_api() -> None:
    for path in (ROOT / "transports").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("triomem.actors", "triomem.engine._"))}
        assert not bad, f"{path.name} imports {bad}"
