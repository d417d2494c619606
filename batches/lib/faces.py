"""A package's face loaded lazily: names imported from its modules on first use, so importing
the package (to enqueue a task by name, say) does not load what those modules import."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_face(package: str, face: dict[str, str]) -> Callable[[str], Any]:
    """The package's module `__getattr__`: each name of `face` from the module it maps to."""

    def __getattr__(name: str) -> Any:
        if name in face:
            return getattr(import_module(f"{package}.{face[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
