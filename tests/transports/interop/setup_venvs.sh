#!/usr/bin/env bash
# Create (once) the two venvs that hold the official MCP Python SDKs for the interop tests:
#   .venv-mcp1: mcp 1.x with its WebSocket client (legacy era only)
#   .venv-mcp2: mcp 2.x (no WebSocket: the test client adapts a websocket to its streams)
# They are kept apart from .venv so the SDKs' dependencies never leak into triomem's own
# environment. Idempotent: a venv whose stamp matches its requirement is left alone, so a
# second run takes well under a second. Usage: setup_venvs.sh [mcp1|mcp2]...
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
python="${TRIOMEM_INTEROP_PYTHON:-$("$root/.venv/bin/python" -c 'import sys; print(sys._base_executable)')}"

setup() {
    local name="$1" requirement="$2" dir="$root/.venv-$1"
    # The websocket client for the 2.x adapter: the `websockets` package (asyncio, like the SDK).
    local stamp="$dir/.triomem-interop-stamp" want="$requirement websockets>=15"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$dir/bin/python" -c "import mcp" 2>/dev/null; then
        return 0
    fi
    rm -rf "$dir"
    "$python" -m venv "$dir"
    # shellcheck disable=SC2086
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check $want
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
