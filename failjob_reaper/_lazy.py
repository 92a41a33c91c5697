"""A package's names imported from their modules on first use (PEP 562), for cold start.

The package lists its names under ``TYPE_CHECKING`` (for mypy and readers) and maps
each to its module here; ``from package import Name`` then imports only Name's module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The package's ``__getattr__``; ``homes``: module -> its names, space-separated."""
    home_of = {name: module for module, names in homes.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        module = home_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # asked once
        return value

    return __getattr__
