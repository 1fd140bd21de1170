"""Build script: the modules every order passes through are compiled to C
extensions with mypyc (shipped with mypy), from the same type-checked Python
sources; everything else stays interpreted.  See README, "The compiled order
path".

``FIXGW_PURE_PYTHON=1`` at install time builds without compiling (for a
machine without a C compiler, or to debug the sources as they run).
"""

from __future__ import annotations

import os

from setuptools import setup

# Measured in groups (bench/RESULTS.md): each group cut the CPU time per
# order; modules whose compiling did not (the asyncio edge) stay
# interpreted.  Modules that define msgspec Structs decoded from bytes or
# from the config (matcher/orders.py: the journal reads orders back; the LP
# adapters' settings; lp_sim_config.py) stay interpreted too: msgspec cannot
# read the field types of a class compiled by mypyc.
COMPILED = [
    "gateway/dropcopy/copies.py",
    "gateway/dropcopy/follow.py",
    "gateway/fix/acceptor.py",
    "gateway/fix/codec.py",
    "gateway/fix/dictionary.py",
    "gateway/fix/events.py",
    "gateway/fix/session.py",
    "gateway/fix/store.py",
    "gateway/fix/validation.py",
    "gateway/net/client.py",
    "gateway/net/server.py",
    "gateway/net/transport.py",
    "gateway/orderflow/entry.py",
    "gateway/orderflow/flow.py",
    "gateway/orderflow/journal.py",
    "gateway/orderflow/mapping.py",
    "gateway/orderflow/publish.py",
    "gateway/orderflow/restore.py",
    "gateway/orderflow/routing.py",
    "gateway/orderflow/stats.py",
    "gateway/sim/loadgen.py",
    "gateway/sim/lp_sim.py",
    "gateway/storage/batch_file.py",
    "gateway/storage/durable.py",
    "gateway/storage/session_store.py",
    "lp_adapters/base.py",
    "lp_adapters/fix/adapter.py",
    "lp_adapters/recent.py",
    "lp_adapters/simulated/adapter.py",
    "lp_adapters/simulated/statement.py",
    "matcher/engine.py",
    "matcher/execution.py",
    "matcher/ids.py",
    "matcher/members.py",
    "risk/accounts.py",
    "risk/limits.py",
    "risk/margin.py",
    "router/book.py",
    "router/exposure.py",
    "router/members.py",
    "router/policy.py",
    "router/units.py",
    "router/values.py",
]


def _extensions() -> list[object]:
    if os.environ.get("FIXGW_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=_extensions())
