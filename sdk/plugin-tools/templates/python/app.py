"""`__NAME__`: a Switchyard plugin.

`__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
where `count` is kept in the host's key-value store across swaps.
Raising Err(Failure(code, message)) answers the client with that code.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv
from wit_world.imports.types import Failure, Message, PluginManifest


class Handler(exports.Handler):
    def manifest(self) -> PluginManifest:
        return PluginManifest(
            name="__NAME__", version="0.1.0", description="", claims=["__NAME__.*"], tick_interval_ms=None
        )

    def handle(self, msg: Message) -> str:
        if msg.type != "__NAME__.hello":
            raise Err(Failure("UNKNOWN_ACTION", f"no action {msg.type!r}"))
        try:
            name = json.loads(msg.data)["name"]
        except (ValueError, TypeError, KeyError) as e:
            raise Err(Failure("INVALID_DATA", f'expected {{"name": str}}: {e!r}'))
        count = json.loads(kv.get("count") or "0") + 1
        kv.set("count", json.dumps(count))
        return json.dumps({"greeting": f"Hello, {name}!", "count": count})
