"""The CPU profile folds ``perf script``'s stacks into compiled functions'
inclusive shares and the interpreter's work by kind, each kind credited
to the nearest compiled caller; it fails with one line when it cannot
sample."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
MYPYC = "a1b2__mypyc.cpython-311-x86_64-linux-gnu.so"
PYTHON = "/usr/lib/libpython3.11.so.1.0"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cpu_profile", REPO / "bench" / "cpu_profile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpu_profile"] = module
    spec.loader.exec_module(module)
    return module


cp = load_script()


def sample(*frames: tuple[str, str]) -> str:
    """One sample as ``perf script`` prints it, leaf first."""
    head = "fixgw  4242/4242  100.000001:     1001001 cpu-clock:pppH:"
    lines = [head]
    for n, (symbol, dso) in enumerate(frames):
        where = "(inlined)" if dso == "inlined" else f"({dso})"
        suffix = "" if dso == "inlined" else f"+0x{16 * (n + 1):x}"
        lines.append(f"\t    7f00{n:08x} {symbol}{suffix} {where}")
    return "\n".join(lines) + "\n\n"


ROUTE = "CPyDef_routing___ChildRouting___route"
POLICY = "CPyDef_policy___route_BestPriceExposureAware_obj_____call__"
RANKED = "CPyDef_policy____ranked"
REPORT = "CPyDef_engine___Matcher____report"

TEXT = (
    # a dict look-up by the policy's ranking, under the routing
    sample(
        ("unicodekeys_lookup_unicode", PYTHON),
        ("_Py_dict_lookup", PYTHON),
        (RANKED, MYPYC),
        (POLICY, MYPYC),
        (ROUTE, MYPYC),
        ("_start", "/usr/bin/python3.11"),
    )
    # the ranking's own code
    + sample((RANKED, MYPYC), (POLICY, MYPYC), (ROUTE, MYPYC))
    # a reference count the compiler inlined into the policy: the policy's work
    + sample(("Py_DECREF", "inlined"), (POLICY, MYPYC), (ROUTE, MYPYC))
    # an inlined part of the allocator: allocation, asked for by the matcher
    + sample(
        ("arena_map_is_used", "inlined"),
        ("_PyObject_Free", PYTHON),
        (REPORT, MYPYC),
    )
    # an attribute read, a routing calling itself again (counted once)
    + sample(
        ("_PyType_Lookup", PYTHON),
        ("PyObject_GetAttr", PYTHON),
        (ROUTE, MYPYC),
        (ROUTE, MYPYC),
    )
    # the kernel, under no compiled function
    + sample(("do_syscall_64", "[kernel.kallsyms]"), ("__libc_write", "/lib/libc.so.6"))
)


def test_a_compiled_functions_c_name_reads_as_its_dotted_name() -> None:
    assert cp.dotted(ROUTE) == "routing.ChildRouting.route"
    assert cp.dotted(RANKED) == "policy._ranked"
    assert cp.dotted(POLICY) == "policy.route_BestPriceExposureAware_obj.__call__"


def test_the_stacks_are_read_leaf_first_with_offsets_and_files_apart() -> None:
    stacks = list(cp.parse(TEXT.splitlines()))
    assert len(stacks) == 6
    assert stacks[0][0] == cp.Frame("unicodekeys_lookup_unicode", PYTHON)
    assert stacks[0][2] == cp.Frame(RANKED, MYPYC)
    assert stacks[2][0] == cp.Frame("Py_DECREF", "inlined")
    assert stacks[5][0] == cp.Frame("do_syscall_64", "[kernel.kallsyms]")
    # a text without a blank line at its end keeps its last sample
    assert len(list(cp.parse(TEXT.rstrip("\n").splitlines()))) == 6


def test_each_function_counts_once_a_sample_wherever_it_is_on_the_stack() -> None:
    profile = cp.fold(cp.parse(TEXT.splitlines()))
    assert profile.samples == 6
    assert profile.inclusive["routing.ChildRouting.route"] == 4  # once in the recursive one
    assert profile.inclusive["policy.route_BestPriceExposureAware_obj.__call__"] == 3
    assert profile.inclusive["policy._ranked"] == 2
    assert profile.inclusive["engine.Matcher._report"] == 1


def test_the_work_is_told_by_kind_and_credited_to_the_nearest_compiled_caller() -> None:
    profile = cp.fold(cp.parse(TEXT.splitlines()))
    assert profile.own == {
        "dict": 1,
        "compiled code itself": 2,
        "allocation": 1,
        "attribute look-up": 1,
        "kernel": 1,
    }
    assert profile.asked_by["dict"] == {"policy._ranked": 1}
    assert profile.asked_by["compiled code itself"] == {
        "policy._ranked": 1,
        "policy.route_BestPriceExposureAware_obj.__call__": 1,
    }
    assert profile.asked_by["allocation"] == {"engine.Matcher._report": 1}
    assert profile.asked_by["attribute look-up"] == {"routing.ChildRouting.route": 1}
    assert profile.asked_by["kernel"] == {"(no compiled caller)": 1}


@pytest.mark.parametrize(
    ("symbol", "dso", "kind"),
    [
        ("CPyDict_GetItem", MYPYC, "dict"),
        ("CPyStr_Build", MYPYC, "the compiler's runtime helpers"),
        ("_PyEval_EvalFrameDefault", PYTHON, "bytecode"),
        ("mpack_encode", "/site-packages/msgspec/_core.so", "msgspec"),
        ("_mpd_qaddsub", "/lib/_decimal.so", "decimal"),
        ("crc32_z", "/lib/libz.so.1", "zlib"),
        ("__memmove_avx_unaligned_erms", "/lib/x86_64-linux-gnu/libc.so.6", "libc"),
        ("EVP_DigestUpdate", "/lib/x86_64-linux-gnu/libcrypto.so.3", "unclassified"),
        ("do_syscall_64", "[kernel.kallsyms]", "kernel"),
    ],
)
def test_each_leaf_is_told_by_its_kind(symbol: str, dso: str, kind: str) -> None:
    assert cp.kind_of(cp.Frame(symbol, dso)) == kind


def test_the_report_gives_shares_of_the_samples() -> None:
    text = cp.report(cp.fold(cp.parse(TEXT.splitlines())), top=2, callers=1)
    lines = text.splitlines()
    assert lines[0] == "6 samples"
    assert "   66.7%  routing.ChildRouting.route" in lines
    assert "   50.0%  policy.route_BestPriceExposureAware_obj.__call__" in lines
    assert "policy._ranked" not in lines[2:5]  # only the top two listed
    assert "   33.3%  compiled code itself" in lines
    assert cp.report(cp.Profile(), top=5, callers=1) == "no samples"


def test_a_saved_script_is_folded_from_the_command_line(tmp_path: Path) -> None:
    saved = tmp_path / "perf-script.txt"
    saved.write_text(TEXT)
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cpu_profile.py"), "--script", str(saved)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("6 samples\n")
    assert "routing.ChildRouting.route" in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--script", "/nonexistent/perf-script.txt"], "cpu_profile: cannot read"),
        (["--pid", "999999999"], "cpu_profile: no process 999999999"),
    ],
)
def test_what_it_cannot_read_is_said_in_one_line(args: list[str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cpu_profile.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode != 0
    assert run.stderr.strip().startswith(message), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("perf") is None or os.geteuid() != 0, reason="needs perf and root")
def test_a_running_process_is_sampled() -> None:
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"]
    )
    try:
        time.sleep(0.2)  # let it start; the samples are taken from then on
        run = subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "cpu_profile.py"),
                "--pid",
                str(busy.pid),
                "--seconds",
                "1",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        busy.kill()
        busy.wait()
    if run.returncode != 0 and "perf record failed" in run.stderr:
        pytest.skip(f"perf cannot sample here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    samples = int(run.stdout.split(" samples", 1)[0].replace(",", ""))
    assert samples > 0
    assert "the work itself, by kind" in run.stdout
