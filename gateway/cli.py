"""``fixgw``: the command line of the appliance."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from config import (
    Config,
    ConfigError,
    config_base,
    default_config_path,
    load_config,
    resolve_paths,
)
from gateway.ops import operator as operator_cli


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
    run.add_argument("--fix-port", type=_listen_port, help="override gateway.fix_port")
    run.add_argument("--http-host", help="override gateway.http_host")
    run.add_argument("--http-port", type=_port, help="override gateway.http_port (0 disables HTTP)")
    run.add_argument(
        "--drop-copy-port",
        type=_port,
        help="override gateway.drop_copy_port (drop-copy sessions)",
    )
    run.add_argument(
        "--data-dir", help="override gateway.data_dir (relative to the working directory)"
    )
    run.add_argument(
        "--cluster",
        metavar="URLS",
        help="override [cluster] servers: NATS URLs, comma-separated (nats://127.0.0.1:4222,...)",
    )

    check = sub.add_parser("check-config", help="validate a config file and list every error")
    check.add_argument("file", nargs="?", help="TOML config file (default: the packaged default)")
    check.add_argument(
        "--lp-sim",
        action="store_true",
        help="check FILE as a `fixgw lp-sim` config (told by its [lp] table otherwise)",
    )

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
    lp_sim.add_argument(
        "--statements",
        metavar="DIR",
        help="override lp.statement_dir: the folder of the LP's daily CSV statements "
        "(default: <data dir>/statements)",
    )
    nats_cluster = sub.add_parser(
        "nats-cluster",
        help="run a NATS JetStream cluster on loopback for a cluster of gateways (try-out, tests)",
    )
    nats_cluster.add_argument(
        "--dir", default="var/nats", help="folder of the nodes' stores and logs (var/nats)"
    )
    nats_cluster.add_argument("--nodes", type=_nodes, default=3, help="how many nodes (3; 3 to 9)")
    nats_cluster.add_argument(
        "--port",
        type=_listen_port,
        help="the first node's client port; node i listens on PORT+2i (client) and "
        "PORT+2i+1 (route), so the URLs stay the same from one start to the next "
        "(default: free ports, other ones at each start)",
    )
    from backoffice.cli import add_arguments as backoffice_arguments

    backoffice = sub.add_parser(
        "backoffice",
        help="run the back office (drop copy -> ledger, reconciliation, exports), or ask it",
    )
    backoffice_arguments(backoffice)
    operator_cli.register(sub)
    return parser


def _load_checked(path: str) -> Config:
    """The config at ``path``, each LP's adapter kind and settings checked
    against the registered kinds in the same pass as the rest of the file;
    ConfigError listing every problem otherwise."""
    from lp_adapters.registry import adapter_settings

    return load_config(path, adapter_settings())


def _check_config(path: str, lp_sim: bool) -> int:
    """Check the file at ``path`` as a gateway config or, with ``lp_sim`` or
    an ``[lp]`` table, as a ``fixgw lp-sim`` config; every problem listed."""
    from config.loader import parse_toml, read_config_text
    from lp_adapters.registry import adapter_settings

    try:
        raw = parse_toml(read_config_text(path), source=path)
        if lp_sim or "lp" in raw:
            return _check_lp_sim_config(path, raw)
        cfg = load_config(path, adapter_settings())
    except ConfigError as exc:
        _print_errors(path, exc.errors)
        return 1
    from gateway.net.server import server_tls
    from gateway.ops.tokens import Tokens

    # the tokens the start would use: the config's, or the environment's
    problem = Tokens.problem(cfg.gateway)
    if problem is not None:
        _print_errors(path, [problem])
        return 1
    resolved = resolve_paths(cfg, config_base(path))
    try:
        server_tls(resolved.gateway)  # a certificate the start could not load
    except ConfigError as exc:
        _print_errors(path, exc.errors)
        return 1
    sessions = ", ".join(s.session_id for s in cfg.sessions)
    data_dir = resolved.gateway.data_dir
    print(f"{path}: OK ({len(cfg.sessions)} sessions: {sessions}; data_dir {data_dir})")
    if any(s.Application == "dropcopy" for s in cfg.sessions):
        # a drop copy: perhaps for a back office run on this config too
        from backoffice.service import follow_problems

        for problem in follow_problems(cfg):
            print(f"  note: `fixgw backoffice run` on it would refuse: {problem}")
    return 0


def _check_lp_sim_config(path: str, raw: dict[str, object]) -> int:
    from gateway.sim.lp_sim_config import validate_lp_sim_raw

    cfg, errors = validate_lp_sim_raw(raw, base=config_base(path))
    if cfg is None:
        _print_errors(path, errors, " in an lp-sim config")
        return 1
    sessions = ", ".join(s.session_id for s in cfg.sessions)
    print(
        f"{path}: OK (lp-sim {cfg.lp.name}, {len(cfg.sessions)} sessions: {sessions}; "
        f"data_dir {cfg.lp.data_dir})"
    )
    return 0


def _print_errors(path: str, errors: Sequence[str], kind: str = "") -> None:
    print(f"{path}: {len(errors)} error(s){kind}", file=sys.stderr)
    for line in errors:
        print(line, file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from gateway.ops.reload import Overrides

    path = args.config or str(default_config_path())
    overrides = Overrides(
        fix_host=args.fix_host,
        fix_port=args.fix_port,
        http_host=args.http_host,
        http_port=args.http_port,
        drop_copy_port=args.drop_copy_port,
        # a path on the command line is the working directory's, the file's are its folder's
        data_dir=os.path.abspath(args.data_dir) if args.data_dir else args.data_dir,
        cluster=tuple(u.strip() for u in args.cluster.split(",") if u.strip())
        if args.cluster
        else None,
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

    from gateway.cluster import ClusterError
    from gateway.daemon import DataDirError, run
    from gateway.fix.store import StoreError
    from gateway.net.server import ListenError
    from gateway.ops.logs import configure_logging
    from gateway.orderflow.journal import JournalError

    configure_logging(cfg.gateway.log_level, cfg.gateway.log_format)
    try:
        return uvloop.run(run(cfg, path, overrides))
    except ConfigError as exc:
        print(f"{path}: refusing to start: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        # a port taken: one line, before anything was made on disk
        print(f"fixgw: {exc}", file=sys.stderr)
        return 2
    except (StoreError, JournalError, ClusterError, DataDirError) as exc:
        print(f"fixgw: refusing to start: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except BrokenPipeError:
        # the reader went away (``fixgw orders | head``): no traceback, and
        # nothing more written to the closed pipe when Python flushes at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _command(args: argparse.Namespace) -> int:
    if operator_cli.is_operator_command(args):
        return operator_cli.run(args)
    if args.command == "check-config":
        return _check_config(args.file or str(default_config_path()), args.lp_sim)
    if args.command == "backoffice":
        from backoffice.cli import main as backoffice_main

        return backoffice_main(args)
    if args.command == "bench":
        from gateway.sim.loadgen import main as bench_main

        return bench_main(args)
    if args.command == "nats-cluster":
        from gateway.sim.nats_cluster import run_cluster

        return run_cluster(args.dir, args.nodes, args.port)
    if args.command == "lp-sim":
        from gateway.sim.lp_sim_main import main as lp_sim_main

        return lp_sim_main(args)
    return _run(args)


def _port(text: str) -> int:
    """A port on the command line: refused there, naming the flag, rather
    than blamed on the config file it overrides."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return port


def _listen_port(text: str) -> int:
    """A port the FIX acceptor listens on: 1-65535 (0 would be any)."""
    port = _port(text)
    if not port:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port to listen on (1-65535)")
    return port


def _nodes(text: str) -> int:
    """``--nodes``: a count of nodes a cluster on one machine can have."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 3 <= count <= 9:
        # JetStream clusters its nodes from 3 on (what replicas = 3 needs);
        # a node alone or a pair cannot hold the gateways' buckets
        raise argparse.ArgumentTypeError(f"a number of nodes, 3 to 9: {text!r}")
    return count
