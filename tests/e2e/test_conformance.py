"""The QuickFIX FIX 4.4 acceptance scripts against ``fixgw run`` with the
conformance profile, as a real process on a free port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO.parent / "shared" / "conformance" / "run_fix_conformance.py"
SCRIPTS = RUNNER.parent / "quickfix-fix44"


def run_suite(port: int, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), "--port", str(port), "-v", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quickfix_acceptance_suite_passes(daemon_factory: Any) -> None:
    assert RUNNER.exists(), (
        f"conformance runner not found at {RUNNER} (../shared must sit beside the checkout)"
    )
    d = daemon_factory("--config", str(REPO / "config" / "conformance.toml"), http=False).start()
    main = run_suite(d.fix_port, SCRIPTS)
    validate = run_suite(d.fix_port, SCRIPTS / "validate")
    assert d.proc is not None
    assert d.proc.poll() is None, "the daemon died during the suite"
    assert main.returncode == 0, main.stdout[-4000:]
    assert "59 passed, 0 failed" in main.stdout
    assert validate.returncode == 0, validate.stdout[-2000:]
    assert "1 passed, 0 failed" in validate.stdout
