"""The `anchorpay` command: `serve`, `worker`, `migrate`, `sandbox`, `custody check`,
`reconcile`.

Bad configuration is one line on stderr, `anchorpay: <message>`, and exit code 2; never a
traceback. Logs never contain secrets (the `sandbox` command prints the sandbox's own
distribution secret on purpose: it only exists in the sandbox).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from anchorpay.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from anchorpay.adapters.fireblocks.config import FireblocksConfig
    from anchorpay.domain.assets import AssetList
    from anchorpay.metrics import Metrics

EXIT_CONFIG = 2
log = logging.getLogger("anchorpay")


class SkippedRunFilter(logging.Filter):
    """APScheduler warns at every tick that finds the previous run of a job still going; our
    jobs run one at a time on purpose (`max_instances=1`), and while a database probe waits
    out a lock that would be one line per tick."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def log_config(level: str, log_format: str = "auto") -> dict[str, Any]:
    handler = {"class": "logging.StreamHandler", "formatter": "brief", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            # LOG_FORMAT: json, text, or auto (json unless stderr is a terminal).
            "brief": {"()": "anchorpay.logs.formatter_for", "log_format": log_format}
        },
        "filters": {"skipped_runs": {"()": SkippedRunFilter}},
        "handlers": {"default": handler},
        "loggers": {
            "anchorpay": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "apscheduler": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "apscheduler.scheduler": {"level": "WARNING", "filters": ["skipped_runs"]},
        },
    }


def _configure_logging(settings: Settings) -> dict[str, Any]:
    import logging.config

    config = log_config(settings.log_level.upper(), settings.log_format)
    logging.config.dictConfig(config)
    return config


def _version() -> str:
    """The installed distribution's version (pyproject's), not a second copy of it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anchorpay")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", help="settings file (default dev.env, or ANCHORPAY_ENV_FILE)")
    parser = argparse.ArgumentParser(
        prog="anchorpay", description="Stellar anchor payouts behind the Anchor Platform RPC API"
    )
    parser.add_argument("--version", action="version", version=f"anchorpay {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the API server (and the worker)")
    serve.add_argument("--host", help="listen address (PLATFORM_SERVER_HOST)")
    # Ports are checked with the settings (one line, exit 2), not by argparse's usage text.
    serve.add_argument("--port", help="listen port (PLATFORM_SERVER_PORT)")
    serve.add_argument("--no-worker", action="store_true", help="serve the API only")
    worker = sub.add_parser("worker", parents=[common], help="run the worker without the API")
    worker.add_argument(
        "--metrics-port", type=int, help="serve this process's /metrics on this port"
    )
    sub.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    sandbox = sub.add_parser("sandbox", parents=[common], help="serve the sandbox network alone")
    sandbox.add_argument("--port", help="listen port (PLATFORM_SERVER_PORT)")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command")
    sandbox_pay = sandbox_sub.add_parser(
        "pay", parents=[common], help="sign and submit a payment from a sandbox account"
    )
    from anchorpay.sandbox_commands import add_pay_arguments

    add_pay_arguments(sandbox_pay)
    sandbox_sub.add_parser(
        "reset",
        parents=[common],
        help="start over on a new sandbox network (keeps transactions, forgets ledger cursors)",
    )
    custody = sub.add_parser("custody", help="custody adapter tools")
    custody_sub = custody.add_subparsers(dest="custody_command", required=True)
    custody_sub.add_parser(
        "check", parents=[common], help="check the Fireblocks credentials, vault and assets"
    )
    reconcile = sub.add_parser(
        "reconcile", parents=[common], help="match the ledger's payments against the payouts"
    )
    # Checked by _reconcile, not argparse: a bad value is one line and exit 2, like settings.
    reconcile.add_argument(
        "--since", metavar="YYYY-MM-DD", help="only payouts and payments from this day (UTC) on"
    )
    reconcile.add_argument(
        "--format", default="table", metavar="table|json", help="report format (default table)"
    )
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.env_file, **{k: v for k, v in overrides.items() if v is not None})


def check_port(host: str, port: int) -> None:
    """Refuse a port that cannot be listened on now, in one line, before anything starts
    (uvicorn would log a traceback-less error only after the worker had started)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ConfigError(
            f"PLATFORM_SERVER_HOST {host!r} is not an address or host name of this machine"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"PLATFORM_SERVER_PORT {port} is already in use on {host}: stop what "
                    "listens there or choose another port (--port or PLATFORM_SERVER_PORT)"
                ) from None
            if exc.errno == errno.EACCES:
                raise ConfigError(
                    f"PLATFORM_SERVER_PORT {port} needs privileges on {host}: choose a port "
                    "from 1024 to 65535"
                ) from None
            raise ConfigError(
                f"cannot listen on {host}:{port} (PLATFORM_SERVER_HOST, PLATFORM_SERVER_PORT): "
                f"{exc.strerror}"
            ) from None


def check_custody(settings: Settings) -> None:
    """The worker's signer needs its seeds now, not at the first payout (their format was
    checked with the settings; here, that the distribution secret is there at all)."""
    if settings.effective_custody_type == "stellar":
        from anchorpay.adapters.stellar_signer import distribution_secret
        from anchorpay.runtime import distribution_secret_default

        distribution_secret(settings, distribution_secret_default(settings))


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from anchorpay.app import create_app, preflight

    settings = _settings(args, platform_server_host=args.host, platform_server_port=args.port)
    if not args.no_worker:
        check_custody(settings)
    config = _configure_logging(settings)
    app = create_app(settings, run_worker=not args.no_worker)
    check_port(settings.platform_server_host, settings.platform_server_port)
    asyncio.run(preflight(settings, app.state.sandbox))  # another network: one line, exit 2
    uvicorn.run(
        app,
        host=settings.platform_server_host,
        port=settings.platform_server_port,
        log_config=config,
        lifespan="on",
        server_header=False,
    )
    return 0


def _stop_event() -> asyncio.Event:
    """Set by SIGTERM or SIGINT (installed before anything starts, so none is missed)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _run_worker(
    settings: Settings,
    assets: AssetList,
    fireblocks: FireblocksConfig | None,
    metrics: Metrics,
) -> None:
    from anchorpay.app import default_ledger, preflight
    from anchorpay.runtime import distribution_secret_default
    from anchorpay.scheduler.worker import Worker
    from anchorpay.store.db import create_engine, session_factory
    from anchorpay.workflow import Services

    stop = _stop_event()
    await preflight(settings, None)  # migrates SQLite; another network: one line, exit 2
    engine = create_engine(settings.database_url, settings.database_busy_timeout_s)
    services = Services(
        settings=settings,
        assets=assets,
        sessions=session_factory(engine),
        ledger=default_ledger(settings),
        fireblocks=fireblocks,
        distribution_secret_default=distribution_secret_default(settings),
        metrics=metrics,
    )
    worker = Worker(services)
    services.wake_worker = worker.wake
    await worker.start()
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await services.ledger.aclose()
        await engine.dispose()


def _worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    check_custody(settings)
    _configure_logging(settings)
    assets = settings.load_assets()
    fireblocks = None
    if settings.effective_custody_type == "fireblocks":  # one line now, not a failed start
        from anchorpay.runtime import load_fireblocks

        fireblocks = load_fireblocks(settings, assets)
    from anchorpay.metrics import Metrics

    metrics = Metrics()
    port = args.metrics_port
    if port is not None:
        # This process's own counters (payouts, observer, trustlines, Fireblocks); the
        # database gauges are the API's (GET /metrics).
        from prometheus_client import start_http_server

        if not 1 <= port <= 65535:
            print("anchorpay: --metrics-port must be from 1 to 65535", file=sys.stderr)
            return 2
        try:
            start_http_server(port, settings.platform_server_host, metrics.registry)
        except OSError as exc:
            reason = exc.strerror or "unavailable"
            print(f"anchorpay: cannot serve metrics on port {port}: {reason}", file=sys.stderr)
            return 2
    asyncio.run(_run_worker(settings, assets, fireblocks, metrics))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from anchorpay.app import safe_database_url
    from anchorpay.store import migrate
    from anchorpay.store.db import create_engine

    settings = _settings(args)
    _configure_logging(settings)
    asyncio.run(create_engine(settings.database_url).dispose())  # creates SQLite's folder
    migrate.upgrade_sync(settings.database_url)
    print(f"anchorpay: database {safe_database_url(settings.database_url)} is up to date")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    if args.sandbox_command == "pay":
        from anchorpay import sandbox_commands

        return sandbox_commands.pay(args, _settings(args))
    if args.sandbox_command == "reset":
        from anchorpay import sandbox_commands

        return sandbox_commands.reset(_settings(args))
    import uvicorn

    from anchorpay.app import build_sandbox
    from anchorpay.rpc.auth import PlatformAuth
    from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET
    from anchorpay.sandbox.app import create_sandbox_app, is_open_route

    settings = _settings(args, platform_server_port=args.port, stellar_network="sandbox")
    check_port(settings.platform_server_host, settings.platform_server_port)
    config = _configure_logging(settings)
    assets = settings.load_assets()
    sandbox = build_sandbox(settings, assets, is_the_ledger=True)
    assert sandbox is not None  # STELLAR_NETWORK=sandbox above
    fireblocks = None
    if settings.effective_custody_type == "fireblocks":
        from anchorpay.app import build_sandbox_fireblocks
        from anchorpay.runtime import load_fireblocks

        fb_config = load_fireblocks(settings, assets)
        fireblocks = build_sandbox_fireblocks(settings, sandbox, fb_config, standalone=True)
    print(f"sandbox distribution account: {sandbox.distribution_account}")
    print(f"sandbox distribution secret (sandbox only): {SANDBOX_DISTRIBUTION_SECRET}", flush=True)
    # Served alone, the sandbox follows the platform auth settings like the embedded one.
    app = PlatformAuth(
        create_sandbox_app(sandbox, fireblocks), settings=settings, sandbox_open=is_open_route
    )
    uvicorn.run(
        app,
        host=settings.platform_server_host,
        port=settings.platform_server_port,
        log_config=config,
    )
    return 0


def _custody(args: argparse.Namespace) -> int:
    """`custody check`: a table of what works, and exit 0 only when everything does."""
    from anchorpay.adapters.fireblocks import build_client
    from anchorpay.adapters.fireblocks.check import run_check
    from anchorpay.runtime import load_fireblocks

    settings = _settings(args)
    if settings.effective_custody_type != "fireblocks":
        raise ConfigError(
            f"custody check needs CUSTODY_TYPE=fireblocks (custody is "
            f"{settings.effective_custody_type})"
        )
    config = load_fireblocks(settings, settings.load_assets())

    async def check() -> bool:
        client = build_client(config)
        try:
            report = await run_check(config, client)
        finally:
            await client.aclose()
        print(report.render())
        return report.usable

    return 0 if asyncio.run(check()) else 1


def _reconcile(args: argparse.Namespace) -> int:
    """`reconcile`: a report on stdout, exit 0 only when everything matches."""
    from anchorpay import reconcile
    from anchorpay.app import default_ledger
    from anchorpay.store.db import create_engine, session_factory

    since, fmt = reconcile.parse_since(args.since), reconcile.parse_format(args.format)
    settings = _settings(args)
    sources = reconcile.sources_of(settings)
    reconcile.check_database(settings.database_url)

    async def run() -> int:
        engine = create_engine(settings.database_url)
        ledger = default_ledger(settings)
        try:
            report = await reconcile.run(
                sources, session_factory(engine), ledger, since=since,
                progress=reconcile.stderr_progress(),
            )  # fmt: skip
        except reconcile.ReconcileError as exc:
            print(f"anchorpay: reconcile: {exc}", file=sys.stderr)
            return 1
        finally:
            await ledger.aclose()
            await engine.dispose()
        print(reconcile.render(report, fmt))
        return 0 if report.ok else 1

    return asyncio.run(run())


COMMANDS = {
    "serve": _serve,
    "worker": _worker,
    "migrate": _migrate,
    "sandbox": _sandbox,
    "custody": _custody,
    "reconcile": _reconcile,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"anchorpay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
