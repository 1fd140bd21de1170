"""Where a running gateway's CPU goes, by compiled function and by the
interpreter's own work, from samples of its call stacks.

The order path is compiled, so Python's own profilers do not see it: each
compiled function is a C function named ``CPyDef_<module>___<name>``.  This
samples the process's call stacks with ``perf record`` (Linux, with the
permission to trace the process: root, or ``kernel.perf_event_paranoid``
low enough) and prints two tables:

* each compiled function's share of the samples, **inclusive** (the
  samples where it is anywhere on the stack: itself and what it calls),
  under its dotted name (``routing.ChildRouting.route``);
* the interpreter's and the libraries' own work, by kind (attribute
  look-ups, dict operations, allocation, the cyclic collector, msgpack,
  the kernel...), each with the compiled functions that ask for most of it
  (the nearest compiled caller on the stack).

Run the gateway under load (``bench/independent_load.py --max`` or
``--rate``), then::

    python bench/cpu_profile.py --pid $(pgrep -f 'fixgw run' | head -1) --seconds 6
    python bench/cpu_profile.py --script perf-script.txt    # a saved ``perf script``

The figures are shares of the samples taken, not times: a function at 12%
took about 12% of the process's CPU while it was sampled.  The samples
cover every thread of the process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

COMPILED_PREFIX: Final = "CPyDef_"

KINDS: Final[dict[str, frozenset[str]]] = {
    "attribute look-up": frozenset(
        {
            "PyObject_GetAttr",
            "_PyObject_GenericGetAttrWithDict",
            "PyObject_GenericGetAttr",
            "_PyType_Lookup",
            "PyMember_GetOne",
            "member_get",
            "_PyObject_GetMethod",
            "PyObject_VectorcallMethod",
            "CPyObject_GetAttr3",
            "slot_tp_getattr_hook",
            "property_descr_get",
        }
    ),
    "dict": frozenset(
        {
            "unicodekeys_lookup_unicode",
            "unicodekeys_lookup_generic",
            "_Py_dict_lookup",
            "PyDict_GetItemWithError",
            "PyDict_GetItem",
            "PyDict_SetItem",
            "PyDict_DelItem",
            "CPyDict_Get",
            "CPyDict_GetItem",
            "CPyDict_SetItem",
            "insertdict",
            "dict_subscript",
            "dict_ass_sub",
            "new_keys_object",
            "free_keys_object",
            "dict_dealloc",
            "dictresize",
            "dictkeys_generic_lookup",
            "dictkeys_decref",
            "_PyDictKeys_StringLookup",
            "dict_get",
            "set_lookkey",
            "set_add_entry",
            "set_dealloc",
            "PySet_Add",
            "PySet_Contains",
            "PySequence_Contains",
            "PyObject_Hash",
        }
    ),
    "allocation": frozenset(
        {
            "_PyObject_Malloc",
            "_PyObject_Free",
            "PyObject_Free",
            "PyObject_Malloc",
            "_PyObject_Realloc",
            "pymalloc_alloc",
            "pymalloc_free",
            "arena_map_get",
            "PyType_GenericAlloc",
            "_PyType_AllocNoTrack",
            "_Py_NewReference",
            "_Py_Dealloc",
            "tuple_alloc",
            "tupledealloc",
            "list_dealloc",
            "subtype_dealloc",
            "object_dealloc",
            "PyObject_GC_Del",
            "PyObject_GC_UnTrack",
            "maybe_freelist_pop",
            "_PyTrash_cond",
            "_PyTrash_begin",
            "_PyTrash_end",
            "arena_map_is_used",
            "insert_to_usedpool",
            "pymalloc_pool_extend",
            "_PyObject_GC_TRACK",
            "_PyObject_GC_UNTRACK",
            "PyTuple_New",
            "PyList_New",
            "PyLong_FromLong",
            "PyFloat_FromDouble",
            "unicode_dealloc",
            "float_dealloc",
        }
    ),
    "calls": frozenset(
        {
            "PyObject_Vectorcall",
            "_PyObject_VectorcallTstate",
            "_PyVectorcall_FunctionInline",
            "_Py_CheckFunctionResult",
            "CPyArg_ParseStackAndKeywords",
            "CPyArg_ParseStackAndKeywordsOneArg",
            "CPyArg_ParseStackAndKeywordsSimple",
            "CPyArg_ParseStackAndKeywordsNoArgs",
            "cfunction_vectorcall_O",
            "cfunction_vectorcall_FASTCALL",
            "method_vectorcall_NOARGS",
            "method_vectorcall_O",
        }
    ),
    "bytecode": frozenset({"_PyEval_EvalFrameDefault"}),
    "cyclic collector": frozenset(
        {
            "gc_collect_main",
            "visit_decref",
            "visit_reachable",
            "move_unreachable",
            "subtract_refs",
            "update_refs",
            "dict_traverse",
            "list_traverse",
            "tupletraverse",
            "subtype_traverse",
        }
    ),
}
"""The interpreter's leaf functions counted under each kind; a leaf in none
of them counts under its library (``msgspec``, ``decimal``, ``kernel``),
as the compiler's runtime helpers (``CPy...``), or as unclassified.  A
leaf the compiler inlined (reference counts, type checks) in none of them
counts as the work of the function it was inlined into."""

INLINED: Final = "inlined"
"""What ``perf script`` shows in place of a frame's file when the frame is
a function inlined into the next one."""

_OFFSET = re.compile(r"\+0x[0-9a-f]+$")


@dataclass(frozen=True)
class Frame:
    """One line of a sample's stack in ``perf script``: the symbol
    (without its offset) and the file it is in."""

    symbol: str
    dso: str


def parse(lines: Iterable[str]) -> Iterator[list[Frame]]:
    """The samples of a ``perf script`` text, each as its stack from the
    leaf (the function running) to the root.  A sample opens with a line
    that does not start with white space; its frames follow, one per
    indented line ``ADDRESS SYMBOL+OFFSET (DSO)``; a blank line ends it."""
    stack: list[Frame] | None = None
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            if stack is not None:
                yield stack
                stack = None
            continue
        if not line[0].isspace():
            if stack is not None:
                yield stack
            stack = []
            continue
        if stack is None:
            continue
        frame = _frame(line.strip())
        if frame is not None:
            stack.append(frame)
    if stack is not None:
        yield stack


def _frame(text: str) -> Frame | None:
    parts = text.split(None, 1)
    if len(parts) != 2:
        return None
    rest = parts[1]
    dso = ""
    if rest.endswith(")") and " (" in rest:
        rest, dso = rest.rsplit(" (", 1)
        dso = dso[:-1]
    rest = rest.replace(" (inlined)", "")
    return Frame(_OFFSET.sub("", rest.strip()), dso)


def dotted(symbol: str) -> str:
    """A compiled function's C name as a dotted name: the separators of its
    module, class and function (``___``) become dots, so
    ``CPyDef_routing___ChildRouting____on_fill`` reads
    ``routing.ChildRouting._on_fill``."""
    return symbol[len(COMPILED_PREFIX) :].replace("___", ".")


def kind_of(frame: Frame) -> str:
    """The kind of work a leaf frame that is not compiled code does."""
    for kind, symbols in KINDS.items():
        if frame.symbol in symbols:
            return kind
    if "kernel" in frame.dso or frame.dso.startswith("[k"):
        return "kernel"
    if frame.symbol.startswith(("mpack_", "Struct_", "ms_", "msgspec")) or "msgspec" in frame.dso:
        return "msgspec"
    if frame.symbol.startswith(("_mpd_", "mpd_", "dec_", "PyDec")) or "_decimal" in frame.dso:
        return "decimal"
    if frame.symbol.startswith(("crc32", "adler32")) or "libz" in frame.dso:
        return "zlib"
    if frame.symbol.startswith("CPy"):
        return "the compiler's runtime helpers"
    if frame.symbol.startswith("__mem") or "/libc.so" in frame.dso or "/libc-" in frame.dso:
        return "libc"
    return "unclassified"


@dataclass
class Profile:
    """Samples folded: ``inclusive`` per compiled function, ``own`` per kind
    of leaf work, and per kind the compiled functions nearest to it."""

    samples: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)
    asked_by: dict[str, Counter[str]] = field(default_factory=dict)


def fold(samples: Iterable[list[Frame]]) -> Profile:
    profile = Profile()
    for stack in samples:
        if not stack:
            continue
        profile.samples += 1
        seen = set()
        for frame in stack:
            if frame.symbol.startswith(COMPILED_PREFIX) and frame.symbol not in seen:
                seen.add(frame.symbol)
                profile.inclusive[dotted(frame.symbol)] += 1
        leaf = _working(stack)
        if leaf.symbol.startswith(COMPILED_PREFIX):
            kind = "compiled code itself"
            caller = dotted(leaf.symbol)
        else:
            kind = kind_of(leaf)
            caller = next(
                (dotted(f.symbol) for f in stack if f.symbol.startswith(COMPILED_PREFIX)),
                "(no compiled caller)",
            )
        profile.own[kind] += 1
        profile.asked_by.setdefault(kind, Counter())[caller] += 1
    return profile


def _working(stack: list[Frame]) -> Frame:
    """The frame whose work a sample counts: its leaf, unless the leaf is
    a small function inlined into its caller (a reference count, a type
    check) and of no kind of its own: then that caller."""
    for frame in stack:
        if frame.dso != INLINED or any(frame.symbol in symbols for symbols in KINDS.values()):
            return frame
    return stack[-1]


def report(profile: Profile, top: int, callers: int) -> str:
    n = profile.samples
    if not n:
        return "no samples"
    lines = [f"{n:,} samples", "", "compiled functions, inclusive (with what they call):"]
    for name, count in profile.inclusive.most_common(top):
        lines.append(f"  {100 * count / n:5.1f}%  {name}")
    lines += ["", "the work itself, by kind (and the compiled functions asking for most of it):"]
    for kind, count in profile.own.most_common():
        lines.append(f"  {100 * count / n:5.1f}%  {kind}")
        for name, asked in profile.asked_by[kind].most_common(callers):
            lines.append(f"           {100 * asked / n:5.2f}%  {name}")
    return "\n".join(lines)


def record(pid: int, seconds: float, frequency: int, folder: Path) -> list[str]:
    """``perf script``'s text of ``seconds`` of samples of process ``pid``."""
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("cpu_profile: perf not found (Debian: apt-get install linux-perf)")
    data = folder / "perf.data"
    recorded = subprocess.run(
        [
            perf,
            "record",
            "-F",
            str(frequency),
            "-g",
            "--call-graph",
            "dwarf,16384",
            "-p",
            str(pid),
            "-o",
            str(data),
            "--",
            "sleep",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if recorded.returncode != 0 or not data.exists():
        why = recorded.stderr.strip().splitlines()[-1:] or [f"exit {recorded.returncode}"]
        raise SystemExit(f"cpu_profile: perf record failed: {why[0]}")
    script = subprocess.run(
        [perf, "script", "-i", str(data)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if script.returncode != 0:
        raise SystemExit(f"cpu_profile: perf script failed (exit {script.returncode})")
    return script.stdout.splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Where a running gateway's CPU goes, by compiled function.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pid", type=int, help="the process to sample")
    source.add_argument("--script", type=Path, help="a saved `perf script` text to fold")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--frequency", type=int, default=999, help="samples a second")
    parser.add_argument("--top", type=int, default=40, help="compiled functions listed")
    parser.add_argument("--callers", type=int, default=5, help="callers listed per kind")
    args = parser.parse_args(argv)
    if args.script is not None:
        try:
            with args.script.open(errors="replace") as text:
                profile = fold(parse(text))
        except OSError as exc:
            raise SystemExit(f"cpu_profile: cannot read {args.script}: {exc.strerror}") from None
    else:
        if not os.path.exists(f"/proc/{args.pid}"):
            raise SystemExit(f"cpu_profile: no process {args.pid}")
        with tempfile.TemporaryDirectory(prefix="cpu-profile-") as folder:
            profile = fold(parse(record(args.pid, args.seconds, args.frequency, Path(folder))))
    print(report(profile, args.top, args.callers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
