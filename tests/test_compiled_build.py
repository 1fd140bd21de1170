"""The order path is tested as it runs: compiled by setup.py (mypyc).

An install with ``FIXGW_PURE_PYTHON=1`` runs the same tests on the sources.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import tomllib

import pytest
from buildkit import PACKAGES, ROOT, compiled_sources

from gateway.daemon import order_path_compiled


def test_every_listed_module_exists_in_a_type_checked_package() -> None:
    listed = compiled_sources()
    assert listed == sorted(listed)
    assert "gateway/orderflow/flow.py" in listed
    for path in listed:
        assert (ROOT / path).is_file(), path
        assert path.split("/")[0] in PACKAGES


@pytest.mark.skipif(
    os.environ.get("FIXGW_PURE_PYTHON") == "1", reason="installed without compiling"
)
def test_the_listed_modules_are_imported_compiled() -> None:
    interpreted = []
    for path in compiled_sources():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        origin = module.__file__ or ""
        if not origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            interpreted.append(path)
    assert not interpreted, f"run from source, not compiled: {interpreted}"
    assert order_path_compiled()


# the back office's databases and the cluster's NATS client (and server):
# no compiled module imports them, so the build (which type-checks the
# compiled sources) does not need them
NOT_BUILT_AGAINST = ("duckdb", "asyncpg", "nats")


def test_the_build_has_every_runtime_dependency() -> None:
    # mypyc type-checks the sources against them
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = set(pyproject["build-system"]["requires"])
    missing = [
        d
        for d in pyproject["project"]["dependencies"]
        if d not in build and not d.startswith(NOT_BUILT_AGAINST)
    ]
    assert not missing, f"add to [build-system] requires: {missing}"
    for source in compiled_sources():
        text = (ROOT / source).read_text()
        for name in NOT_BUILT_AGAINST:
            assert f"import {name}" not in text, f"{source} imports {name}: build against it"


def test_no_compiled_function_names_two_unrelated_exceptions_alike() -> None:
    """Compiled, ``except A as exc`` then ``except B as exc`` share one
    variable typed A: catching a B raises TypeError (docs/compiled.md)."""
    import ast

    broad = {"Exception", "BaseException"}
    found = []
    for path in compiled_sources():
        tree = ast.parse((ROOT / path).read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first: dict[str, str] = {}
            for node in ast.walk(fn):
                if not isinstance(node, ast.ExceptHandler) or node.name is None:
                    continue
                kind = ast.unparse(node.type) if node.type is not None else "BaseException"
                was = first.setdefault(node.name, kind)
                if was != kind and was not in broad:
                    found.append(f"{path}:{node.lineno} {fn.name}: {node.name} is {was} and {kind}")
    assert found == []
