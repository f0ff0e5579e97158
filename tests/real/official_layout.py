"""An official-layout (``AIDC-AI/TG-LLaVA@0009eb8``) checkpoint at the real shapes.

The adapter keys come from the official key table (``keys_official.json``, built with the official
code at H = 1024). Their shapes at the LLM's width follow the fixture README's documented rule
("H_dependent_shapes"): only the LLM-facing layers ``mm_projector.{0,2}`` and
``mm_patch_encoder.proj.{0,2}`` depend on H — a Sequential index 0 layer maps the 1024-wide
features to H (weight ``[H, 1024]``, bias ``[H]``), an index 2 layer maps H to H (``[H, H]``,
``[H]``); everything else stays 1024-wide whatever H is. :func:`official_adapter_shapes` applies
that rule to the H = 1024 table and checks the result against the table's own ``H_dependent_shapes``
(read from the official model built at 3584 / 4096 / 5120). Values follow the parity fixture's
weight recipe A, so TG-FOM's ``zero_layer`` is not zero.

The CLIP towers and the LLM are taken from one of our models, renamed to the official prefixes
(transformers 4.37 nested the CLIP modules under ``vision_model.`` / ``text_model.``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.unit.modeling.official_fixture import official_key_table, recipe_tensor

#: The official modules whose shapes depend on the LLM width (fixture README, "H_dependent_shapes").
H_FACING_MODULES = ("model.mm_projector.", "model.mm_patch_encoder.proj.")
#: Sequential index of the H -> H layer of an ``mlp2x_gelu`` block (index 0 maps the features to H).
SECOND_LAYER_INDEX = 2
#: Our prefixes -> the official ones, for the towers and the LLM.
OFFICIAL_PREFIXES = (
    ("vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("guide_tower.", "model.text_tower.text_tower.text_model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
)
#: Our top-level modules the official adapter key table covers (replaced by the table's keys).
ADAPTER_PREFIXES = ("multi_modal_projector.", "text_guided_mask.", "detail_perceiver.")
#: Official ``model_type`` by our LLM ``model_type`` (tg_llava_eval.checkpoints.reading, inverted).
OFFICIAL_MODEL_TYPES = {"llama": "llava_llama_text_learnable_query", "qwen2": "llava_qwen_text_learnable_query"}


def _real_shape(key: str, shape: list[int], hidden_size: int) -> list[int]:
    """The documented rule: the output dim of an H-facing layer is H; a second layer's input too."""
    prefix = next((p for p in H_FACING_MODULES if key.startswith(p)), None)
    if prefix is None:
        return list(shape)
    index = int(key[len(prefix):].split(".")[0])
    real = [hidden_size, *shape[1:]]
    if index == SECOND_LAYER_INDEX and len(shape) == 2:
        real[1] = hidden_size
    return real


def official_adapter_shapes(hidden_size: int) -> list[tuple[str, list[int], str]]:
    """The official adapter key table at LLM width ``hidden_size``: ``[(key, shape, dtype)]``.

    Raises:
        AssertionError: The rule disagrees with the table's ``H_dependent_shapes`` for this width.
    """
    table = official_key_table()
    rows = [(key, _real_shape(key, shape, hidden_size), dtype) for key, shape, dtype in table["keys"]]
    recorded = table["H_dependent_shapes"][str(hidden_size)]
    derived = {key: shape for key, shape, _ in rows if key.startswith(H_FACING_MODULES)}
    assert derived == recorded, f"the H rule disagrees with keys_official.json at H={hidden_size}"
    return rows


def official_state_dict(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The official layout of ``model`` (towers, LLM) plus the adapters rebuilt from the key table.

    Tied entries of the official state dict (the Q-Former MLM decoder is the word embedding) are
    written as separate copies, as ``torch.save`` of a state dict would store both names.
    """
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith(ADAPTER_PREFIXES):
            continue
        prefix, official = next((p, o) for p, o in OFFICIAL_PREFIXES if key.startswith(p))
        state[official + key[len(prefix):]] = value.to(dtype)
    for key, shape, kind in official_adapter_shapes(model.config.text_config.hidden_size):
        if kind.startswith("int"):
            state[key] = torch.arange(shape[-1], dtype=torch.int64).expand(*shape).clone()
        else:
            state[key] = recipe_tensor(key, shape, "sin").to(dtype)
    return state


def write_official_checkpoint(model, tokenizer, folder: Path, *, dtype: torch.dtype, shard_bytes: int) -> dict:
    """Write the official layout of ``model`` to ``folder`` in shards of about ``shard_bytes``.

    Returns:
        The state dict written (key -> tensor), for the checks after conversion.
    """
    folder.mkdir(parents=True, exist_ok=True)
    state = official_state_dict(model, dtype)
    shard: dict[str, torch.Tensor] = {}
    size, index = 0, 0
    for key, value in state.items():
        shard[key] = value.contiguous()
        size += value.numel() * value.element_size()
        if size >= shard_bytes:
            save_file(shard, str(folder / f"model-{index:05d}.safetensors"))
            shard, size, index = {}, 0, index + 1
    if shard:
        save_file(shard, str(folder / f"model-{index:05d}.safetensors"))
    text = model.config.text_config.to_dict()
    text["model_type"] = OFFICIAL_MODEL_TYPES[model.config.text_config.model_type]
    text.update(mm_hidden_size=model.config.vision_config.hidden_size, mm_projector_type="mlp2x_gelu")
    (folder / "config.json").write_text(json.dumps(text, default=str))
    tokenizer.save_pretrained(folder)
    return state
