"""Run the real ``triomem`` console script in subprocesses, hermetically: no ``TRIOMEM_*``
variable and no config file of the machine running the tests leak in."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

TRIOMEM = str(Path(sys.executable).with_name("triomem"))


def clean_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOMEM_")}
    env.update({"HF_HUB_OFFLINE": "1", "XDG_CONFIG_HOME": str(tmp_path / "no-config")})
    env.update(extra or {})
    return env


def triomem(tmp_path: Path, *args: str, db: Path | None = None,
            embedder: str | None = "wordllama", env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``triomem ARGS [--db DB] [--embedder EMBEDDER]``, output captured as text."""
    command = [TRIOMEM, *args]
    if db is not None:
        command += ["--db", str(db)]
    if embedder is not None:
        command += ["--embedder", embedder]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=clean_env(tmp_path, env))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a run that must have succeeded."""
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


@contextlib.contextmanager
def served(tmp_path: Path, db: Path, *extra: str, env: Mapping[str, str] | None = None,
           wait: float = 60) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """A ``triomem serve --json --port 0`` process on ``db`` and its announcement; stopped
    with SIGTERM by its pid (killed if it does not exit) when the block ends."""
    process = subprocess.Popen(
        [TRIOMEM, "serve", "--db", str(db), "--embedder", "wordllama", "--port", "0", "--json",
         *extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=clean_env(tmp_path, env))
    try:
        assert process.stderr is not None
        announcement: dict[str, Any] | None = None
        seen = b""
        while announcement is None:
            ready, _, _ = select.select([process.stderr], [], [], wait)
            assert ready, f"no announcement within {wait} s: {seen!r}"
            line = process.stderr.readline()
            assert line, f"serve exited ({process.wait()}): {seen!r}"
            seen += line
            with contextlib.suppress(ValueError):
                decoded = json.loads(line)
                if isinstance(decoded, dict) and decoded.get("event") == "listening":
                    announcement = decoded
        # Keep reading stderr so a chatty server never blocks on a full pipe.
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield process, announcement
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
