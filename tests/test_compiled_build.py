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
