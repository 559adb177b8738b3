"""A package's names imported from their modules on first use (PEP 562 ``__getattr__``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(namespace: dict[str, Any], where: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of the package whose globals are ``namespace``: ``name`` is
    imported from the module ``where[name]`` when first asked for, then kept as a global
    (asked again, it is found without this function)."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        found = import_module(module)
        # A name that is the module's own last part is the module (``conddsl.conds``).
        value = found if module == f"{package}.{name}" else getattr(found, name)
        namespace[name] = value
        return value

    return __getattr__
