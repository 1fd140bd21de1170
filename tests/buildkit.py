"""What setup.py compiles, read without running setup.py, and the packages it
comes from."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGES: tuple[str, ...] = tuple(
    path
    for path in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    if (ROOT / path / "__init__.py").is_file()
)
"""The project's packages, as the type check takes them (mypyc compiles
only type-checked sources; the examples it checks too are no package)."""


def compiled_sources() -> list[str]:
    """setup.py's COMPILED: the sources built into extension modules."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError("setup.py has no COMPILED list")
