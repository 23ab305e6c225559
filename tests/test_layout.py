"""DESIGN §1: imports point one way; only platform/ (and cli) may import Ray."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "neuroray"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_platform_imports_ray() -> None:
    for room in ("datasets", "trainables", "search_spaces"):
        for py in (SRC / room).rglob("*.py"):
            bad = {n for n in _imports(py) if n == "ray" or n.startswith(("ray.", "neuroray.platform"))}
            assert not bad, f"{py.relative_to(SRC)} imports {bad}"


def test_modules_stay_small() -> None:
    for py in SRC.rglob("*.py"):
        assert len(py.read_text().splitlines()) < 500, py
