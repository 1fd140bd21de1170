"""The order path is tested as it runs: compiled by setup.py (mypyc).

An install with ``FIXGW_PURE_PYTHON=1`` runs the same tests on the sources.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
from pathlib import Path

import pytest

from gateway.daemon import order_path_compiled

ROOT = Path(__file__).resolve().parents[1]


def _compiled_list() -> list[str]:
    """setup.py's COMPILED, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError("setup.py has no COMPILED list")


def test_every_listed_module_exists_and_is_type_checked() -> None:
    listed = _compiled_list()
    assert listed == sorted(listed)
    assert "gateway/order_flow.py" in listed
    for path in listed:
        assert (ROOT / path).is_file(), path
        assert path.split("/")[0] in ("gateway", "matcher", "router", "lp_adapters", "config")


@pytest.mark.skipif(
    os.environ.get("FIXGW_PURE_PYTHON") == "1", reason="installed without compiling"
)
def test_the_listed_modules_are_imported_compiled() -> None:
    interpreted = []
    for path in _compiled_list():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        origin = module.__file__ or ""
        if not origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            interpreted.append(path)
    assert not interpreted, f"run from source, not compiled: {interpreted}"
    assert order_path_compiled()
