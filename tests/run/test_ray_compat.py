"""Every private Ray symbol neuroray uses resolves on the installed Ray, and that Ray is the one they were
checked against: an upgrade fails here, by name, not as a feature that silently switched off."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import ray

from neuroray.run import ray_compat

SRC = Path(__file__).resolve().parents[2] / "src" / "neuroray"


def test_pinned_to_the_installed_ray() -> None:
    assert ray.__version__ == ray_compat.RAY_VERSION, (
        f"Ray {ray.__version__} is installed; run/ray_compat.py was checked against {ray_compat.RAY_VERSION}. "
        "Check every PRIVATE symbol against the new Ray's source, then update RAY_VERSION")


@pytest.mark.parametrize("name", sorted(ray_compat.PRIVATE))
def test_every_private_symbol_resolves(name: str) -> None:
    assert callable(ray_compat.private(name)), ray_compat.PRIVATE[name]


def test_no_private_ray_symbol_outside_the_compat_module() -> None:
    for py in SRC.rglob("*.py"):
        if py.name == "ray_compat.py":
            continue
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ray":
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert "._" not in f".{node.module}" and not private, f"{py.relative_to(SRC)}: {node.module} {private}"
