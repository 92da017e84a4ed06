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

EXIT_CONFIG = 2
log = logging.getLogger("anchorpay")


class BriefFormatter(logging.Formatter):
    """Tracebacks only for errors of the server itself: a client's malformed request or a
    dropped connection is one line."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno < logging.ERROR and record.exc_info:
            record = logging.makeLogRecord(record.__dict__)
            record.exc_info = None
            record.exc_text = None
        return super().format(record)


def log_config(level: str) -> dict[str, Any]:
    handler = {"class": "logging.StreamHandler", "formatter": "brief", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "brief": {
                "()": BriefFormatter,
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            }
        },
        "handlers": {"default": handler},
        "loggers": {
            "anchorpay": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "apscheduler": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }


def _configure_logging(settings: Settings) -> dict[str, Any]:
    import logging.config

    config = log_config(settings.log_level.upper())
    logging.config.dictConfig(config)
    return config


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", help="settings file (default dev.env, or ANCHORPAY_ENV_FILE)")
    parser = argparse.ArgumentParser(
        prog="anchorpay", description="Stellar anchor payouts behind the Anchor Platform RPC API"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the API server (and the worker)")
    serve.add_argument("--host", help="listen address (PLATFORM_SERVER_HOST)")
    serve.add_argument("--port", type=int, help="listen port (PLATFORM_SERVER_PORT)")
    serve.add_argument("--no-worker", action="store_true", help="serve the API only")
    sub.add_parser("worker", parents=[common], help="run the worker without the API")
    sub.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    sandbox = sub.add_parser("sandbox", parents=[common], help="serve the sandbox network alone")
    sandbox.add_argument("--port", type=int, help="listen port (PLATFORM_SERVER_PORT)")
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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from anchorpay.app import create_app, preflight

    settings = _settings(args, platform_server_host=args.host, platform_server_port=args.port)
    config = _configure_logging(settings)
    app = create_app(settings, run_worker=not args.no_worker)
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
    settings: Settings, assets: AssetList, fireblocks: FireblocksConfig | None
) -> None:
    from anchorpay.app import default_ledger, preflight
    from anchorpay.runtime import distribution_secret_default
    from anchorpay.scheduler.worker import Worker
    from anchorpay.store.db import create_engine, session_factory
    from anchorpay.workflow import Services

    stop = _stop_event()
    await preflight(settings, None)  # migrates SQLite; another network: one line, exit 2
    engine = create_engine(settings.database_url)
    services = Services(
        settings=settings,
        assets=assets,
        sessions=session_factory(engine),
        ledger=default_ledger(settings),
        fireblocks=fireblocks,
        distribution_secret_default=distribution_secret_default(settings),
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
    _configure_logging(settings)
    assets = settings.load_assets()
    fireblocks = None
    if settings.effective_custody_type == "fireblocks":  # one line now, not a failed start
        from anchorpay.runtime import load_fireblocks

        fireblocks = load_fireblocks(settings, assets)
    asyncio.run(_run_worker(settings, assets, fireblocks))
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
    from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET
    from anchorpay.sandbox.app import create_sandbox_app

    settings = _settings(args, platform_server_port=args.port, stellar_network="sandbox")
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
    uvicorn.run(
        create_sandbox_app(sandbox, fireblocks),
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
