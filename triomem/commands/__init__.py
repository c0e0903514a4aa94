"""The ``triomem`` commands behind the argument parser in ``triomem.cli``.

- ``_common``: exit codes, the typed ``CommandFailed``, output, opening a local engine;
- ``memory``: remember, recall, list, get, forget, stats, as MCP tool calls through the
  server that owns the database when one runs, else on a local engine;
- ``transfer``: import and export (JSONL streams, foreign formats);
- ``maintenance``: backup, restore, reembed, doctor, config show.
"""
