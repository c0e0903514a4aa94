#!/usr/bin/env bash
# Create (once) the two venvs that hold the official MCP Python SDKs for the interop tests:
#   .venv-mcp1: mcp 1.x with its WebSocket client (legacy era only)
#   .venv-mcp2: mcp 2.x (no WebSocket: the test client adapts a websocket to its streams)
# They are kept apart from .venv so the SDKs' dependencies never leak into triomem's own
# environment. Idempotent: a venv whose stamp matches its requirement is left alone, so a
# second run takes well under a second. Usage: setup_venvs.sh [mcp1|mcp2]...
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
# The interpreter behind triomem's own venv, so both sides run the same Python.
if [[ -n "${TRIOMEM_INTEROP_PYTHON:-}" ]]; then
    python="$TRIOMEM_INTEROP_PYTHON"
elif [[ -x "$root/.venv/bin/python" ]]; then
    python="$("$root/.venv/bin/python" -c 'import sys; print(sys._base_executable)')"
else
    python="$(command -v python3)"
fi

setup() {
    local name="$1" requirement="$2" dir="$root/.venv-$1"
    # The websocket client for the 2.x adapter: the `websockets` package (asyncio, like the SDK).
    local stamp="$dir/.triomem-interop-stamp" want="$requirement websockets>=15"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$dir/bin/python" -c "import mcp" 2>/dev/null; then
        return 0
    fi
    rm -rf "$dir"
    "$python" -m venv "$dir"
    # pip's output goes to a log, shown only if the install fails.
    # shellcheck disable=SC2086
    if ! "$dir/bin/python" -m pip install --quiet --disable-pip-version-check $want \
            > "$dir/install.log" 2>&1; then
        cat "$dir/install.log" >&2
        echo "setup_venvs.sh: installing $want into $dir failed" >&2
        exit 1
    fi
    printf '%s' "$want" > "$stamp"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(mcp1 mcp2)
for target in "${targets[@]}"; do
    case "$target" in
        mcp1) setup mcp1 "mcp[ws]<2" ;;
        mcp2) setup mcp2 "mcp>=2,<3" ;;
        *) echo "unknown venv: $target (expected mcp1 or mcp2)" >&2; exit 2 ;;
    esac
done
