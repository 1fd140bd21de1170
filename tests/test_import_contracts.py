"""The dependency rules between the parts (import-linter contracts in
pyproject.toml): they hold for the code as it is, and an import against
them is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from buildkit import PACKAGES, ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_sources(into: Path) -> Path:
    """The project's packages (Python sources only) and pyproject.toml."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            into / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "static"),
        )
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")
    return into


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the domain importing the daemon
        ("router/model.py", "import gateway.daemon", "The domain does no I/O"),
        # the protocol reaching for the asyncio edge
        ("gateway/fix/codec.py", "import gateway.net.transport", "The FIX protocol imports"),
        # the protocol opening a socket itself
        ("gateway/fix/session.py", "import socket", "The FIX protocol does no I/O"),
        # the order flow building a piece
        ("gateway/orderflow/flow.py", "import lp_adapters.registry", "The order flow builds"),
        # the daemon importing a simulator
        ("gateway/orderflow/stats.py", "import gateway.sim.loadgen", "Nothing imports the sim"),
        # a lower part importing a higher one
        ("gateway/storage/durable.py", "import gateway.orderflow.rules", "top to bottom"),
    ],
)
def test_an_import_against_the_rules_is_caught(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    tree = copy_of_the_sources(tmp_path)
    with (tree / module).open("a") as source:
        source.write(f"\n{line}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(broken in row and "BROKEN" in row for row in result.stdout.splitlines()), (
        result.stdout
    )
