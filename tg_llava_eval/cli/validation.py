"""Argument checks every sub-command runs before importing torch, a toolkit or DeepSpeed.

Each check returns the value it accepted or raises :class:`~tg_llava_eval.errors.TGLlavaUsageError`
with one line that names the argument, the value and what was expected; ``tg-llava-eval`` turns it
into exit status 2 (:mod:`tg_llava_eval.cli`). Nothing here imports more than the standard library
and the project's torch-free modules.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoints.folders import check_output_folder, require_checkpoint
from ..errors import TGLlavaConfigError, TGLlavaUsageError

__all__ = [
    "check_output_folder", "require_checkpoint", "require_dir", "require_file", "require_output_file",
    "require_variant",
]


def require_file(value: str | os.PathLike, argument: str) -> Path:
    """``value`` as an existing file (not a folder)."""
    path = Path(value)
    if not path.exists():
        raise TGLlavaUsageError(f"{argument} {str(value)!r}: no such file")
    if not path.is_file():
        raise TGLlavaUsageError(f"{argument} {str(value)!r}: is a folder, expected a file")
    return path


def require_dir(value: str | os.PathLike, argument: str) -> Path:
    """``value`` as an existing folder (not a file)."""
    path = Path(value)
    if not path.exists():
        raise TGLlavaUsageError(f"{argument} {str(value)!r}: no such folder")
    if not path.is_dir():
        raise TGLlavaUsageError(f"{argument} {str(value)!r}: is a file, expected a folder")
    return path


def require_output_file(value: str | os.PathLike, argument: str) -> Path:
    """``value`` as a file that may be written: not a folder, its parent not a file."""
    path = Path(value)
    if path.is_dir():
        raise TGLlavaUsageError(f"{argument} {str(value)!r}: is a folder, expected a file to write")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise TGLlavaUsageError(f"{argument} {str(value)!r}: {parent} is a file, not a folder")
    return path


def require_variant(name: str, argument: str = "--variant") -> str:
    """``name`` as a variant of the catalogue; an unknown one names the closest (variants.get_variant)."""
    from ..variants import get_variant  # plain data: no torch

    try:
        return get_variant(name).name
    except TGLlavaConfigError as error:
        raise TGLlavaUsageError(f"{argument}: {error}") from None
