"""Rebuild the official parity weights from ``keys_official.json`` (fixture README, "Weight recipe").

Recipe A (``sin``): ``value[i] = 0.02 * sin(0.37 * i + p)``; recipe B (``fullrank``): the index is
scrambled as ``j = (i*i) mod 10007`` first. ``p = (crc32(name) % 10007) / 1000`` with ``name`` the
key without its ``model.`` prefix; norm weights get ``1 + base``; everything in float64, then
float32. Integer buffers are left as constructed (``arange``).
"""

from __future__ import annotations

import json
import zlib

import torch

from tests.shared_files import official_parity_file

PRIME = 10007


def official_key_table() -> dict:
    """``keys_official.json``: the key table and the keys the official forward never computes."""
    return json.loads(official_parity_file("keys_official.json").read_text())


def official_keys() -> list[tuple[str, list[int], str]]:
    """``[key, shape, dtype]`` in the official ``state_dict()`` order."""
    return official_key_table()["keys"]


def recipe_tensor(key: str, shape: list[int], recipe: str) -> torch.Tensor:
    """The recipe value of one official key (float32, C order)."""
    name = key[len("model."):] if key.startswith("model.") else key
    phase = (zlib.crc32(name.encode("utf-8")) % PRIME) / 1000.0
    n = 1
    for dim in shape:
        n *= dim
    i = torch.arange(n, dtype=torch.float64)
    if recipe == "fullrank":
        idx = torch.arange(n, dtype=torch.int64)
        i = ((idx * idx) % PRIME).to(torch.float64)
    elif recipe != "sin":
        raise ValueError(f"unknown recipe {recipe!r}")
    base = 0.02 * torch.sin(0.37 * i + phase)
    if key.lower().endswith("norm.weight"):
        base = 1.0 + base
    return base.to(torch.float32).reshape(shape)


def official_state_dict(recipe: str) -> dict[str, torch.Tensor]:
    """The whole official adapter state dict (108 keys) under ``recipe``."""
    state = {}
    for key, shape, dtype in official_keys():
        if dtype.startswith("int"):
            state[key] = torch.arange(shape[-1], dtype=torch.int64).expand(*shape).clone()
        else:
            state[key] = recipe_tensor(key, shape, recipe)
    return state
