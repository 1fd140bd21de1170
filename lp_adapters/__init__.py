"""Liquidity provider adapters: the one place where an LP's wire format and
connection live.

:mod:`lp_adapters.base` is the contract every adapter follows,
:mod:`lp_adapters.registry` the kinds a config can name (and how their
settings are checked and adapters built), and each subpackage one kind:
:mod:`lp_adapters.simulated` and :mod:`lp_adapters.fix`.
"""
