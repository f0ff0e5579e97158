"""Reading checkpoint files: weights from safetensors (single or sharded) or tensor-only ``.bin``,
the official TG-LLaVA ``config.json``, and whether a folder holds a tokenizer.

Everything here only reads: nothing is renamed (:mod:`.converting`) or loaded into a module
(:mod:`.loading`). Why safetensors first and ``torch.load(weights_only=True)`` only as a fallback:
docs/architecture.md, "Checkpoints".
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..errors import TGLlavaCheckpointError
from .folders import TOKENIZER_FILES, WEIGHT_PATTERNS

logger = logging.getLogger(__name__)

#: official ``model_type`` in config.json -> the LLM's transformers ``model_type``.
OFFICIAL_MODEL_TYPES: dict[str, str] = {
    "llava_llama_text_learnable_query": "llama",
    "llava_qwen_text_learnable_query": "qwen2",
}



def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights of a checkpoint directory or file, safely (any layout: ours, official, HF).

    Supports ``*.safetensors`` (single or sharded with ``model.safetensors.index.json``) and
    ``.bin`` files (``torch.load(weights_only=True)``: tensors only, no pickled code), including an
    official stage-1 directory with ``mm_projector.bin``, ``mm_cross_attn.bin``,
    ``mm_patch_encoder.bin``. A directory with safetensors files is read from those alone.

    Args:
        path: A weight file or a directory holding them.

    Returns:
        Key -> tensor, the files' dicts merged (in sorted file order).

    Raises:
        TGLlavaCheckpointError: If nothing loadable is found, or a ``.bin`` file is not a tensor dict.
    """
    from safetensors.torch import load_file

    path = Path(path)
    files: list[Path]
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = next((found for found in (sorted(path.glob(p)) for p in WEIGHT_PATTERNS) if found), [])
    else:
        raise TGLlavaCheckpointError(f"{path}: no such checkpoint file or directory")
    if not files:
        raise TGLlavaCheckpointError(f"{path}: no weight files ({', '.join(WEIGHT_PATTERNS)})")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            part = load_file(str(file))
        else:
            try:
                part = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as exc:  # a pickle with objects other than tensors, a corrupt file
                raise TGLlavaCheckpointError(f"{file}: cannot be read as a tensor dict ({exc})") from exc
        if not isinstance(part, dict):
            raise TGLlavaCheckpointError(f"{file}: expected a dict of tensors, got {type(part).__name__}")
        state.update(part)
    logger.info("read %d tensors from %d file(s) under %s", len(state), len(files), path)
    return state


def read_official_config(path: str | Path) -> dict:
    """The official ``config.json`` next to the weights, with its LLM ``model_type`` resolved.

    Args:
        path: The official checkpoint directory.

    Returns:
        The JSON dict plus ``"llm_model_type"`` (``"llama"`` or ``"qwen2"``, from
        :data:`OFFICIAL_MODEL_TYPES`).

    Raises:
        TGLlavaCheckpointError: Missing file or an unknown official ``model_type``.
    """
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise TGLlavaCheckpointError(f"{config_file}: missing (needed to rebuild the LLM config)")
    config = json.loads(config_file.read_text())
    official_type = config.get("model_type")
    if official_type not in OFFICIAL_MODEL_TYPES:
        raise TGLlavaCheckpointError(
            f"{config_file}: model_type {official_type!r} is not an official TG-LLaVA type "
            f"({sorted(OFFICIAL_MODEL_TYPES)})"
        )
    config["llm_model_type"] = OFFICIAL_MODEL_TYPES[official_type]
    return config


def has_tokenizer_files(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a saved tokenizer (used for the CLIP tokenizer default)."""
    return any((Path(directory) / name).is_file() for name in TOKENIZER_FILES)


__all__ = ["OFFICIAL_MODEL_TYPES", "TOKENIZER_FILES", "read_state_dict", "read_official_config", "has_tokenizer_files"]
