"""``aptkit``: a package's service is not started while it is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import aptkit
import pytest


def test_no_service_starts_while_installing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy-rc.d"
    monkeypatch.setattr(aptkit, "POLICY_RC_D", policy)
    with aptkit._no_service_starts():
        assert os.access(policy, os.X_OK)
        # invoke-rc.d's "action forbidden by policy"
        assert subprocess.run([str(policy), "prometheus", "start"], check=False).returncode == 101
    assert not policy.exists()


def test_a_policy_of_the_machine_is_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    monkeypatch.setattr(aptkit, "POLICY_RC_D", policy)
    with aptkit._no_service_starts():
        assert policy.read_text() == "#!/bin/sh\nexit 0\n"
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_found_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aptkit, "_run", pytest.fail)
    assert aptkit.install("prometheus", lambda: "/usr/bin/promtool") == "/usr/bin/promtool"


def test_not_root_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(aptkit.PackageUnavailable, match="apt-get install --no-install-recommends"):
        aptkit.install("prometheus", lambda: None)
