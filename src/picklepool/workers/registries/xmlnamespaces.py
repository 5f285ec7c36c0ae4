"""xml.etree.ElementTree: the namespace prefixes the script registered
(``register_namespace("svg", ...)``), those its source does not set, registered in a worker
(a family of :mod:`.table`)."""

from __future__ import annotations

import importlib
from typing import Any

# parent: ElementTree's own prefixes, as its source sets them (read once)
_xml_own: dict[str, str] | None = None


def xml_signal(et: Any) -> Any:
    namespaces = getattr(et, "_namespace_map", None)
    return len(namespaces) if type(namespaces) is dict else None


def xml_entries(et: Any) -> list[tuple[Any, Any]]:
    global _xml_own
    if _xml_own is None:
        _xml_own = _xml_defaults(et)
    return [
        (("xml.namespace", uri), prefix)
        for uri, prefix in list(et._namespace_map.items())
        if _xml_own.get(uri) != prefix
    ]


def _xml_defaults(et: Any) -> dict[str, str]:
    """``_namespace_map`` as ElementTree's source sets it (the parent's has the script's
    entries in it already: register_namespace does not keep the defaults apart)."""
    import ast

    try:
        with open(et.__file__, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_namespace_map" for t in node.targets
            ):
                found = ast.literal_eval(node.value)
                return found if isinstance(found, dict) else {}
    except (OSError, ValueError, SyntaxError, TypeError):  # (no source: every entry is sent)
        pass
    return {}


def _xml_map() -> dict[str, str]:
    return importlib.import_module("xml.etree.ElementTree")._namespace_map  # type: ignore[no-any-return]


def xml_get(key: Any, default: Any) -> Any:
    return _xml_map().get(key[1], default)


def xml_set(key: Any, value: Any) -> None:
    importlib.import_module("xml.etree.ElementTree").register_namespace(value, key[1])


def xml_pop(key: Any) -> None:
    _xml_map().pop(key[1], None)
