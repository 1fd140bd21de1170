"""The QuickFIX FIX 4.4 acceptance scripts carried in tests/conformance,
played by the project's runner against ``fixgw run`` with the conformance
profile, as a real process on a free port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO / "tests" / "conformance"
RUNNER = CONFORMANCE / "runner.py"
SCRIPTS = CONFORMANCE / "quickfix-fix44"


def run_suite(port: int, scripts: Path) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """The names of the scripts in ``scripts``, and the runner's run of them."""
    names = sorted(path.stem for path in scripts.glob("*.def"))
    run = subprocess.run(
        [sys.executable, str(RUNNER), "--port", str(port), "-v", str(scripts)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return names, run


def assert_all_passed(names: list[str], run: subprocess.CompletedProcess[str]) -> None:
    lines = run.stdout.splitlines()
    passed = sorted(line.split()[1] for line in lines if line.startswith("PASS "))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert passed == names
    assert lines[-1] == f"{len(names)} passed, 0 failed"


def test_quickfix_acceptance_suite_passes(daemon_factory: Any) -> None:
    d = daemon_factory("--config", str(REPO / "config" / "conformance.toml"), http=False).start()
    main_names, main = run_suite(d.fix_port, SCRIPTS)
    validate_names, validate = run_suite(d.fix_port, SCRIPTS / "validate")
    assert d.proc is not None
    assert d.proc.poll() is None, "the daemon died during the suite"
    assert len(main_names) + len(validate_names) == 60
    assert_all_passed(main_names, main)
    assert_all_passed(validate_names, validate)
