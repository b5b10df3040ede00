"""`greet` (in Python): answers `greet` with a greeting in the asked language.

{"name": "Ada", "language": "fr"} -> {"greeting": "Bonjour, Ada !", "count": 1}
where `count` is how many times this name has been greeted (kept in the host's kv store).
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv, log
from wit_world.imports.types import Failure, Message, PluginManifest

GREETINGS = {
    "en": "Hello, {}!",
    "fr": "Bonjour, {} !",
    "es": "¡Hola, {}!",
    "de": "Hallo, {}!",
    "it": "Ciao, {}!",
}
# Made once: `json.dumps` with options builds a new encoder on every call.
encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Handler(exports.Handler):
    def manifest(self) -> PluginManifest:
        return PluginManifest(
            name="greet",
            version="0.1.0",
            description="Greets a name in a few languages (Python)",
            claims=["greet"],
            tick_interval_ms=None,  # no lifecycle ticks
        )

    def handle(self, msg: Message) -> str:
        try:
            data = json.loads(msg.data)
            name, language = data["name"], data.get("language", "en")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise Err(Failure("INVALID_DATA", f"expected {{\"name\": str, \"language\": str}}: {e!r}"))
        if not isinstance(name, str) or not isinstance(language, str):
            raise Err(Failure("INVALID_DATA", "name and language must be strings"))

        template = GREETINGS.get(language)
        if template is None:
            raise Err(Failure("UNKNOWN_LANGUAGE", f"no greeting for {language!r}; known: {sorted(GREETINGS)}"))

        key = f"greetings/{name}"
        count = int(kv.get(key) or "0") + 1
        kv.set(key, str(count))  # a quota failure raises Err(Failure) and reaches the client as is
        log.log(log.Level.INFO, f"greeted {name} in {language} ({count} times)")
        reply = {"greeting": template.format(name), "count": count}
        return encode(reply)
