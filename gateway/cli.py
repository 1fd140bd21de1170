"""``fixgw``: the command line of the appliance."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from config import Config, ConfigError, default_config_path, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fixgw", description="FIX 4.4 gateway and smart order router"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument(
        "--config", help="TOML config file (default: the packaged config/default.toml)"
    )
    run.add_argument("--fix-host", help="override gateway.fix_host")
    run.add_argument("--fix-port", type=int, help="override gateway.fix_port")
    run.add_argument("--http-host", help="override gateway.http_host")
    run.add_argument("--http-port", type=int, help="override gateway.http_port (0 disables HTTP)")
    run.add_argument("--data-dir", help="override gateway.data_dir")

    check = sub.add_parser("check-config", help="validate a config file and list every error")
    check.add_argument("file", nargs="?", help="TOML config file (default: the packaged default)")

    from gateway.sim.loadgen import add_arguments

    bench = sub.add_parser("bench", help="load a running gateway with orders and measure latency")
    add_arguments(bench)

    lp_sim = sub.add_parser(
        "lp-sim", help="run a simulated liquidity provider as a FIX 4.4 acceptor"
    )
    lp_sim.add_argument(
        "--config", required=True, help="TOML file of the simulated LP (e.g. config/lp-sim-a.toml)"
    )
    lp_sim.add_argument("--port", type=int, required=True, help="TCP port of its FIX acceptor")
    lp_sim.add_argument("--data-dir", help="override lp.data_dir (the session stores)")
    return parser


def _load_checked(path: str) -> Config:
    """The config at ``path``, each LP's adapter kind and settings checked
    against the registered kinds in the same pass as the rest of the file;
    ConfigError listing every problem otherwise."""
    from lp_adapters.registry import adapter_settings

    return load_config(path, adapter_settings())


def _check_config(path: str) -> int:
    try:
        cfg = _load_checked(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.errors)} error(s)", file=sys.stderr)
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    sessions = ", ".join(s.session_id for s in cfg.sessions)
    print(f"{path}: OK ({len(cfg.sessions)} sessions: {sessions})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from gateway.ops.reload import Overrides

    path = args.config or str(default_config_path())
    overrides = Overrides(
        fix_host=args.fix_host,
        fix_port=args.fix_port,
        http_host=args.http_host,
        http_port=args.http_port,
        data_dir=args.data_dir,
    )
    try:
        cfg = overrides.apply(_load_checked(path))
    except ConfigError as exc:
        print(
            f"{path}: refusing to start, {len(exc.errors)} configuration error(s):", file=sys.stderr
        )
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2

    import uvloop

    from gateway.daemon import run
    from gateway.fix.store import StoreError
    from gateway.ops.logs import configure_logging
    from gateway.orderflow.journal import JournalError

    configure_logging(cfg.gateway.log_level, cfg.gateway.log_format)
    try:
        return uvloop.run(run(cfg, path, overrides))
    except ConfigError as exc:
        print(f"{path}: refusing to start: {exc}", file=sys.stderr)
        return 2
    except (StoreError, JournalError) as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file or str(default_config_path()))
    if args.command == "bench":
        from gateway.sim.loadgen import main as bench_main

        return bench_main(args)
    if args.command == "lp-sim":
        from gateway.sim.lp_sim_main import main as lp_sim_main

        return lp_sim_main(args)
    return _run(args)
