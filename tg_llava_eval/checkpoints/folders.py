"""What a checkpoint folder holds, checked without reading it (and without importing torch).

The command lines check their path arguments with these functions before they import the model
stack, so a wrong path is one line and exit status 2 instead of a traceback minutes later.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TGLlavaUsageError

#: The file that makes a folder a (transformers) checkpoint: ours, an official one, a CLIP or an LLM.
CONFIG_NAME = "config.json"
#: Weight files a checkpoint folder may hold (safetensors single or sharded; tensor-only .bin).
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
#: Files that mark a folder as holding a tokenizer.
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def checkpoint_problem(path: str | os.PathLike, *, weights: bool = True) -> str | None:
    """Why ``path`` is not a checkpoint folder (``None`` when it is one).

    Args:
        path: The folder.
        weights: Require weight files too (``False`` for a config-and-tokenizer folder).
    """
    path = Path(path)
    if not path.exists():
        return "no such folder"
    if not path.is_dir():
        return "is a file, not a checkpoint folder"
    if not (path / CONFIG_NAME).is_file():
        return f"has no {CONFIG_NAME}: not a checkpoint folder"
    if weights and not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        return f"has no weight files ({', '.join(WEIGHT_PATTERNS)})"
    return None


def require_checkpoint(path: str | os.PathLike, argument: str, *, weights: bool = True) -> Path:
    """``path`` as a checkpoint folder, or a :class:`TGLlavaUsageError` naming ``argument``."""
    problem = checkpoint_problem(path, weights=weights)
    if problem is not None:
        raise TGLlavaUsageError(f"{argument} {str(path)!r}: {problem}")
    return Path(path)


def check_output_folder(output_dir: str | os.PathLike, argument: str = "output folder") -> Path:
    """``output_dir`` if a checkpoint may be written there: absent, empty, or an earlier checkpoint.

    Writing replaces the whole folder (``write_checkpoint`` is atomic), so a folder that holds
    anything else is refused rather than deleted.

    Raises:
        TGLlavaUsageError: a file, or a non-empty folder without ``config.json``.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise TGLlavaUsageError(f"{argument} {str(output_dir)!r} is a file, not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / CONFIG_NAME).is_file():
        raise TGLlavaUsageError(
            f"{argument} {str(output_dir)!r} is not empty and holds no checkpoint: writing would replace it; "
            "give a new or empty folder"
        )
    return output_dir
