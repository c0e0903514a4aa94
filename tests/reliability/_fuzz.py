"""A seeded generator of hostile inputs for a live MCP WebSocket.

Each ``Input`` is either a text message (``text``; the server must answer it with exactly
the replies JSON-RPC asks for, all well-formed, and keep the connection) or raw ``frame``
bytes that break the WebSocket protocol (the server must close that connection, nothing
else). Strings include lone surrogates (as JSON escapes), cursors hex numbers beyond 64 bits,
time phrases counts beyond the calendar: inputs that once closed the engine.
"""

from __future__ import annotations

import json
import random
from typing import Any

import attrs

from tests.reliability._wire import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT, frame
from tests.transports._messages import initialize_params, modern_meta

METHODS = ["initialize", "ping", "tools/list", *["tools/call"] * 8, "server/discover", "logging/setLevel", "notifications/initialized",
           "notifications/cancelled", "resources/list", "prompts/get", "", "tools/call/x"]
TOOLS = ["memory_store", "memory_store", "memory_store", "memory_recall", "memory_recall",
         "memory_get", "memory_update", "memory_forget",
         "memory_list", "memory_stats", "memory_sync_status", "memory_conflicts", "nope", ""]
ARGUMENTS = ["content", "query", "id", "tags", "tags_all", "tags_any", "type", "space",
             "metadata", "limit", "cursor", "after", "before", "created_after",
             "updated_before", "min_score", "include_partial", "idempotency_key", "x"]
SHAPES = {  # tool -> (required, optional) arguments, for calls the schema accepts
    "memory_store": (("content",), ("tags", "type", "metadata", "space", "idempotency_key")),
    "memory_recall": (("query",), ("limit", "space", "type", "tags_all", "tags_any", "after",
                                   "before", "min_score", "include_partial")),
    "memory_get": (("id",), ()), "memory_forget": (("id",), ()),
    "memory_update": (("id",), ("content", "tags", "type", "metadata")),
    "memory_list": ((), ("space", "type", "tags_all", "tags_any", "created_after",
                         "created_before", "updated_after", "updated_before", "limit", "cursor")),
    "memory_stats": ((), ()), "memory_conflicts": ((), ("limit",)),
}
HOSTILE = ["'); DROP TABLE memories; --", '"', "*", "NEAR(", "content:", "\x00", "\\",
           "' OR 1=1 --", "%", "_", "yesterday", "3 days ago", "last week", "2025-06-01",
           "2025-13-45T99:99:99Z", "now", "", " ", "\u202e", "\ufeff", "null", "[]", "{}",
           "01a20922-54d6-727a-9f12-000000000000", "ff", "0", "-1", "\n\r\t", "a" * 300,
           "\ud800", "x\udfff", "f" * 20, "-8000000000000001", "99999999999 days ago",
           "last 99999999 years"]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@attrs.frozen
class Input:
    kind: str
    text: str | None = None  # a text message
    frame: bytes | None = None  # raw bytes that break the protocol


@attrs.define
class Fuzzer:
    rng: random.Random
    next_id: int = 1
    known_ids: list[str] = attrs.field(factory=list)  # ids the server handed out

    def string(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            return rng.choice(HOSTILE)
        if roll < 0.5 and self.known_ids:
            return rng.choice(self.known_ids)
        if roll < 0.9:
            alphabet = "abc xyz 0123 \"'\\*:(){}[]^-+~%_\x01\x7f é中𝄞\u0300\u200b"
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        return "".join(chr(rng.randrange(0x20, 0x110000))  # lone surrogates included
                       for _ in range(rng.randrange(1, 20)))

    def name(self) -> str:
        """A space, type or tag: usually a valid one."""
        if self.rng.random() < 0.7:
            return self.rng.choice(["default", "work", "note", "fact", "x.y_z:1-2", "étiquette"])
        return self.string()

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.random()
        if depth > 3 or roll < 0.5:
            return rng.choice([
                None, True, False, rng.randrange(-3, 1001), rng.randrange(-2**70, 2**70),
                rng.uniform(-1e9, 1e9), 1e308, -0.0, self.string()])
        if roll < 0.75:
            return [self.value(depth + 1) for _ in range(rng.randrange(0, 4))]
        return {self.string(): self.value(depth + 1) for _ in range(rng.randrange(0, 4))}

    def request_id(self) -> Any:
        self.next_id += 1
        roll = self.rng.random()
        if roll < 0.8:
            return self.next_id
        if roll < 0.9:
            return f"s{self.next_id}"
        return self.rng.choice([None, 1.5, True, [], {}, "", -1, 2**80])  # odd ones

    def well_typed(self, tool: str) -> dict[str, Any]:
        """Arguments of the right names and types, values from anywhere."""
        rng = self.rng
        required, optional = SHAPES[tool]
        args: dict[str, Any] = {}
        for name in (*required, *rng.sample(optional, rng.randrange(len(optional) + 1))):
            if name in ("tags", "tags_all", "tags_any"):
                args[name] = [self.name() for _ in range(rng.randrange(0, 4))]
            elif name in ("space", "type"):
                args[name] = self.name()
            elif name == "metadata":
                args[name] = {self.string(): self.value(2) for _ in range(rng.randrange(3))}
            elif name == "limit":
                args[name] = rng.randrange(1, 101)
            elif name == "min_score":
                args[name] = rng.random() / 2
            elif name == "include_partial":
                args[name] = rng.random() < 0.5
            elif name == "content" and rng.random() < 0.7:
                args[name] = f"fuzz {self.next_id}: {self.string()}"
            elif name == "id" and self.known_ids and rng.random() < 0.7:
                args[name] = rng.choice(self.known_ids)
            else:
                args[name] = self.string() or "empty"
        return args

    def arguments(self, tool: object) -> dict[str, Any]:
        rng = self.rng
        if isinstance(tool, str) and tool in SHAPES and rng.random() < 0.6:
            return self.well_typed(tool)
        args: dict[str, Any] = {}
        for name in rng.sample(ARGUMENTS, rng.randrange(0, 5)):
            if name in ("tags", "tags_all", "tags_any"):
                args[name] = [self.string() for _ in range(rng.randrange(0, 4))] \
                    if rng.random() < 0.8 else self.value()
            elif name == "metadata":
                args[name] = self.value(1) if rng.random() < 0.5 else {"k": self.value(1)}
            elif name == "limit":
                args[name] = rng.choice([1, 5, 0, -1, 1000, 1001, 2.5, "10", None])
            elif name == "cursor":
                args[name] = rng.choice([self.string(), format(rng.randrange(2**70), "x")])
            else:
                args[name] = self.string() if rng.random() < 0.85 else self.value()
        if rng.random() < 0.6:  # usually a valid call, so the engine does work
            args.setdefault("content", f"fuzz {self.next_id} {self.string()}"[:2000])
            args.setdefault("query", self.string() or "fuzz")
        return args

    def params(self, method: str) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.08:
            return self.value()
        if method == "tools/call":
            name = rng.choice(TOOLS) if rng.random() < 0.95 else self.value()
            params: dict[str, Any] = {"name": name,
                                      "arguments": self.arguments(name) if rng.random() < 0.95
                                      else self.value()}
            if rng.random() < 0.1:
                params["_meta"] = rng.choice([modern_meta(), {"progressToken": self.value()},
                                              {"progressToken": self.next_id}])
            return params
        if method == "initialize":
            return initialize_params(rng.choice(["2025-11-25", "2024-11-05", "1999-01-01"]))
        if method == "notifications/cancelled":
            return {"requestId": rng.choice([self.next_id - rng.randrange(0, 5), "x", None])}
        if method == "server/discover":
            return {"_meta": modern_meta()}
        return {self.string(): self.value()} if roll < 0.3 else {}

    def message(self) -> Input:
        rng = self.rng
        method = rng.choice(METHODS) if rng.random() < 0.97 else self.string()
        notify = method.startswith("notifications/") or rng.random() < 0.05
        body: dict[str, Any] = {"jsonrpc": "2.0" if rng.random() < 0.97 else self.value(),
                                "method": method}
        if not notify:
            body["id"] = self.request_id()
        if rng.random() < 0.9:
            body["params"] = self.params(method)
        if rng.random() < 0.03:
            body[self.string()] = self.value()
        text = json.dumps(body, ensure_ascii=rng.random() < 0.5)
        if not _is_utf8(text):  # a lone surrogate travels as a JSON escape
            text = json.dumps(body, ensure_ascii=True)
        return Input("message", text)

    def next(self) -> Input:
        item = self._next()
        if item.text is not None and not _is_utf8(item.text):  # a text frame is UTF-8
            return attrs.evolve(item, text=item.text.encode("utf-8", "replace").decode())
        return item

    def _next(self) -> Input:
        rng = self.rng
        roll = rng.random()
        if roll < 0.70:
            return self.message()
        if roll < 0.85:
            return Input("mutated", self._mutate(self.message().text or ""))
        if roll < 0.90:
            return Input("junk", self.string() if rng.random() < 0.5 else rng.choice(
                ["", "{", "[", "null", "1", '"x"', "[1,2]", "{}", "\ufeff{}", "NaN",
                 '{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}', "{" * 5000]))
        if roll < 0.94:
            depth = rng.choice([10, 127, 129, 1000, 100_000])
            opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
            inner = opener * depth + "1" + closer * depth
            return Input("deep", '{"jsonrpc":"2.0","id":' + str(self._id()) +
                         ',"method":"tools/call","params":{"name":"memory_store","arguments":'
                         '{"content":"deep","metadata":{"x":' + inner + "}}}}")
        if roll < 0.97:
            size = rng.choice([1000, 70_000, 1_000_000])
            field = rng.choice(["content", "query", "id", "type", "cursor", "space"])
            tool = rng.choice(["memory_store", "memory_recall", "memory_list", "memory_get"])
            return Input("big", json.dumps({
                "jsonrpc": "2.0", "id": self._id(), "method": "tools/call",
                "params": {"name": tool, "arguments": {field: "z" * size}}}))
        return Input("frame", None, self._bad_frame())

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _mutate(self, text: str) -> str:
        rng = self.rng
        chars = list(text)
        for _ in range(rng.randrange(1, 6)):
            if not chars:
                break
            i = rng.randrange(len(chars))
            op = rng.randrange(5)
            if op == 0:
                chars[i] = rng.choice('{}[]",:0\\ x\x00é')
            elif op == 1:
                del chars[i]
            elif op == 2:
                chars.insert(i, rng.choice('{}[]",:\\'))
            elif op == 3:
                chars[i:i] = chars[i:i + rng.randrange(1, 20)]
            else:
                del chars[i:]
        return "".join(chars)

    def _bad_frame(self) -> bytes:
        rng = self.rng
        choice = rng.randrange(9)
        if choice == 0:
            return frame(OP_TEXT, b'{"jsonrpc":"2.0","id":1,"method":"ping"' + bytes(
                [rng.choice([0x80, 0xC3, 0xFF, 0xED])]) + b"}")  # invalid UTF-8
        if choice == 1:
            return frame(OP_BINARY, b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
        if choice == 2:
            return frame(OP_TEXT, b"{}", rsv=rng.randrange(1, 8))
        if choice == 3:
            return frame(OP_TEXT, b"{}", masked=False)
        if choice == 4:
            return frame(rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xF]), b"x")
        if choice == 5:
            return frame(OP_PING, b"p" * rng.randrange(126, 300))
        if choice == 6:
            return frame(OP_CONTINUATION, b"orphan")
        if choice == 7:
            return frame(OP_PING, b"x", fin=False)
        return frame(OP_CLOSE, rng.choice([b"\x03", b"\x03\xe7", b"\x03\xe8\xff\xfe"]))
