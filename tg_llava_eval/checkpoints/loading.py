"""Strict loading: copy a state dict into a module, failing with a missing/unexpected key report.

Used to put pretrained CLIP towers and an LLM into a freshly built TG-LLaVA
(:mod:`.assembling`). Why strict, and why new embedding rows start at the mean row:
docs/architecture.md, "Checkpoints".
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import TGLlavaCheckpointError


@torch.no_grad()
def load_strict(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: Path,
    role: str,
    ignored_patterns: tuple[str, ...] = (),
) -> None:
    """Copy ``state`` into ``module``, failing on any missing or unexpected key.

    Args:
        module: Target module (its ``state_dict`` names are the expected keys).
        state: Tensors read from ``source``.
        source, role: For the error message.
        ignored_patterns: Regexes of unused keys the model class itself declares
            (``_keys_to_ignore_on_load_unexpected``).

    Rows missing at the end of an embedding (the new ``<image>`` row) are filled with the mean of
    the pretrained rows; a parameter missing only because it is tied to a loaded one is accepted.

    Raises:
        TGLlavaCheckpointError: Missing/unexpected keys or a shape mismatch, naming ``source``.
    """
    target = module.state_dict()
    unexpected = sorted(
        key for key in state
        if key not in target and not any(re.search(pattern, key) for pattern in ignored_patterns)
    )
    loaded_ptrs = {target[key].data_ptr() for key in target if key in state}
    missing = sorted(key for key in target if key not in state and target[key].data_ptr() not in loaded_ptrs)
    if missing or unexpected:
        raise TGLlavaCheckpointError(
            f"{role}={str(source)!r} does not fit the {type(module).__name__}: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''} ({len(missing)}), "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)})"
        )
    for key, param in target.items():
        if key not in state:
            continue  # tied to a loaded parameter
        value = state[key]
        if value.shape == param.shape:
            param.copy_(value)
        elif value.dim() == 2 and value.shape[1:] == param.shape[1:] and value.shape[0] < param.shape[0]:
            # [V_old, H] -> [V_new, H]: the new rows (<image>, padding) start at the mean row.
            param[: value.shape[0]].copy_(value)
            param[value.shape[0]:].copy_(value.float().mean(dim=0).to(param.dtype))
        else:
            raise TGLlavaCheckpointError(
                f"{role}={str(source)!r}: {key} has shape {tuple(value.shape)}, the model needs {tuple(param.shape)}"
            )


__all__ = ["load_strict"]
