"""Packages whose public names are imported on first use (PEP 562 module ``__getattr__``).

``import tg_llava_eval`` (and ``tg_llava_eval.checkpoints``, ``tg_llava_eval.inference``) must stay
cheap and torch-free, because argument checks and the torch-free layers (results, leaderboards,
the variant catalogue) import them; the names they export pull in their modules only when used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> the module that defines it (absolute, or relative to ``package``
            with a leading dot).

    Example (in a package ``__init__``)::

        __getattr__, __dir__ = lazy_exports(__name__, {"read_state_dict": ".reading"})
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
