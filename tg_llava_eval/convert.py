"""Convert official TG-LLaVA weights (``AIDC-AI/TG-LLaVA@0009eb8`` layout) to ours.

The official model prefixes everything with ``model.`` and names modules after the code's history
(``mm_cross_attn`` = TG-FOM, ``mm_patch_encoder`` = TG-DP, ``zero_layer``, ``resize_linear``); its
Q-Former is a LAVIS BERT with word embeddings, text-branch FFNs and an MLM head that the forward pass
never uses. :data:`RENAME_RULES` is the declared table from their names to ours (transformers'
``Blip2QFormerModel`` / ``Idefics2PerceiverLayer`` / llava-hf role names); :data:`DROP_RULES` lists,
with a reason each, the keys that have no counterpart because they are never computed. The
conversion is strict: a key matched by neither table, or matched twice, is an error; the dropped
keys are reported. See ``docs/convert.md`` and ``reference/tg_llava_architecture.md`` §4.4.

The official code zero-initialises TG-FOM's output layer. A checkpoint whose output layer is still
all zeros has a TG-FOM that does nothing — the classic symptom of forgetting
``--pretrain_mm_cross_attn`` in stage 2 — so :func:`official_to_hf` refuses it unless the caller says
that is intended (``allow_zero_text_guided_mask=True``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import TGLlavaCheckpointError

logger = logging.getLogger(__name__)

#: (official regex, our replacement) — applied with ``re.fullmatch``; each key must match one rule.
RENAME_RULES: tuple[tuple[str, str], ...] = (
    # projector (mlp2x_gelu: Sequential indices 0 and 2)
    (r"model\.mm_projector\.0\.(weight|bias)", r"multi_modal_projector.linear_1.\1"),
    (r"model\.mm_projector\.2\.(weight|bias)", r"multi_modal_projector.linear_2.\1"),
    # TG-FOM
    (r"model\.mm_cross_attn\.query_tokens", r"text_guided_mask.query_tokens"),
    (r"model\.mm_cross_attn\.resize_linear\.(weight|bias)", r"text_guided_mask.guide_projection.\1"),
    (r"model\.mm_cross_attn\.zero_layer\.(weight|bias)", r"text_guided_mask.output_projection.\1"),
    (
        r"model\.mm_cross_attn\.Qformer\.bert\.embeddings\.LayerNorm\.(weight|bias)",
        r"text_guided_mask.qformer.layernorm.\1",
    ),
    (
        r"model\.mm_cross_attn\.Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)",
        r"text_guided_mask.qformer.encoder.layer.\1.\2.attention.\3.\4",
    ),
    (
        r"model\.mm_cross_attn\.Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)",
        r"text_guided_mask.qformer.encoder.layer.\1.\2.output.\3.\4",
    ),
    (
        r"model\.mm_cross_attn\.Qformer\.bert\.encoder\.layer\.(\d+)\.(intermediate_query|output_query)\.(dense|LayerNorm)\.(weight|bias)",
        r"text_guided_mask.qformer.encoder.layer.\1.\2.\3.\4",
    ),
    # TG-DP
    (r"model\.mm_patch_encoder\.position_embedding\.weight", r"detail_perceiver.position_embedding.weight"),
    (r"model\.mm_patch_encoder\.pre_mlp\.0\.(weight|bias)", r"detail_perceiver.pre_mlp.linear_1.\1"),
    (r"model\.mm_patch_encoder\.pre_mlp\.2\.(weight|bias)", r"detail_perceiver.pre_mlp.linear_2.\1"),
    (r"model\.mm_patch_encoder\.resize_linear\.(weight|bias)", r"detail_perceiver.guide_projection.\1"),
    (r"model\.mm_patch_encoder\.perceiver\.latents", r"detail_perceiver.latents"),
    (r"model\.mm_patch_encoder\.perceiver\.layers\.(.+)", r"detail_perceiver.layers.\1"),
    (r"model\.mm_patch_encoder\.perceiver\.norm\.weight", r"detail_perceiver.norm.weight"),
    (r"model\.mm_patch_encoder\.proj\.0\.(weight|bias)", r"detail_perceiver.output_projection.linear_1.\1"),
    (r"model\.mm_patch_encoder\.proj\.2\.(weight|bias)", r"detail_perceiver.output_projection.linear_2.\1"),
    # CLIP towers (delay-loaded wrappers in the official code; transformers 4.37 nested the CLIP
    # modules under `vision_model.` / `text_model.`, transformers 5 does not)
    (r"model\.vision_tower\.vision_tower\.vision_model\.(.+)", r"vision_tower.\1"),
    (r"model\.text_tower\.text_tower\.text_model\.(.+)", r"guide_tower.\1"),
    # the LLM (Llama / Qwen2 causal-LM layout)
    (r"model\.(embed_tokens|layers|norm)\.(.+)", r"language_model.model.\1.\2"),
    (r"lm_head\.(.+)", r"language_model.lm_head.\1"),
)

#: (official regex, reason) — keys deliberately not carried over.
DROP_RULES: tuple[tuple[str, str], ...] = (
    (
        r"model\.mm_cross_attn\.Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings)\.weight",
        "Q-Former text embeddings: never computed (the Q-Former only receives query embeddings)",
    ),
    (
        r"model\.mm_cross_attn\.Qformer\.bert\.embeddings\.position_ids",
        "Q-Former position-id buffer: never used",
    ),
    (
        r"model\.mm_cross_attn\.Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.(dense|LayerNorm)\.(weight|bias)",
        "Q-Former text-branch FFN: never computed (there are no text tokens)",
    ),
    (r"model\.mm_cross_attn\.Qformer\.cls\..+", "Q-Former MLM head: never computed"),
    (
        r"model\.vision_tower\.vision_tower\.vision_model\.embeddings\.position_ids",
        "CLIP position-id buffer (rebuilt at construction)",
    ),
    (
        r"model\.text_tower\.text_tower\.text_model\.embeddings\.position_ids",
        "CLIP position-id buffer (rebuilt at construction)",
    ),
    (r"model\.mm_patch_encoder\.position_ids", "TG-DP position-id buffer (rebuilt at construction)"),
)

#: Our key of TG-FOM's zero-initialised output layer (``zero_layer`` officially).
TEXT_GUIDED_MASK_OUTPUT = "text_guided_mask.output_projection"

#: official ``model_type`` in config.json -> the LLM's transformers ``model_type``.
OFFICIAL_MODEL_TYPES: dict[str, str] = {
    "llava_llama_text_learnable_query": "llama",
    "llava_qwen_text_learnable_query": "qwen2",
}


@dataclass
class ConversionResult:
    """Output of :func:`official_to_hf`.

    Attributes:
        state_dict: Our key -> tensor.
        dropped: Official key -> reason, for every key not carried over.
        renamed: Official key -> our key.
    """

    state_dict: dict[str, torch.Tensor]
    dropped: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        """Human-readable summary: counts and the dropped keys grouped by reason."""
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        lines = [f"converted {len(self.renamed)} tensors, dropped {len(self.dropped)} unused keys"]
        for reason, keys in by_reason.items():
            lines.append(f"  dropped {len(keys)}: {reason}")
        return "\n".join(lines)


def _compile(rules):
    return [(re.compile(pattern), target) for pattern, target in rules]


_RENAME = _compile(RENAME_RULES)
_DROP = _compile(DROP_RULES)


def map_official_key(key: str) -> tuple[str | None, str | None]:
    """Map one official key.

    Returns:
        ``(our_key, None)`` when renamed, ``(None, reason)`` when dropped.

    Raises:
        TGLlavaCheckpointError: If no rule or more than one rule matches.
    """
    renames = [(pat, target) for pat, target in _RENAME if pat.fullmatch(key)]
    drops = [reason for pat, reason in _DROP if pat.fullmatch(key)]
    if len(renames) + len(drops) != 1:
        what = "no rule" if not renames and not drops else "several rules"
        raise TGLlavaCheckpointError(
            f"official key {key!r} matches {what} of the conversion table "
            "(tg_llava_eval.convert.RENAME_RULES / DROP_RULES)"
        )
    if drops:
        return None, drops[0]
    pattern, target = renames[0]
    return pattern.sub(target, key), None


def official_to_hf(
    state_dict: Mapping[str, torch.Tensor], *, allow_zero_text_guided_mask: bool = False
) -> ConversionResult:
    """Rename an official TG-LLaVA state dict to our layout, strictly.

    Accepts a full stage-2 checkpoint, the stage-1 adapter files merged into one dict, or any
    subset; tied duplicates of the Q-Former MLM head may be present or absent.

    Args:
        state_dict: Official key -> tensor.
        allow_zero_text_guided_mask: Accept a TG-FOM output layer that is all zeros (a TG-FOM that
            does nothing: e.g. a stage-1 start, or a stage 2 that forgot to load stage 1's TG-FOM).

    Returns:
        A :class:`ConversionResult`; its ``report()`` is also logged.

    Raises:
        TGLlavaCheckpointError: Unknown key, two official keys mapping to one of ours, or an
            all-zero TG-FOM output layer without ``allow_zero_text_guided_mask``.
    """
    result = ConversionResult(state_dict={})
    for key, tensor in state_dict.items():
        ours, reason = map_official_key(key)
        if ours is None:
            result.dropped[key] = reason
            continue
        if ours in result.state_dict:
            raise TGLlavaCheckpointError(f"official keys map twice to {ours!r} (second: {key!r})")
        result.state_dict[ours] = tensor
        result.renamed[key] = ours
    weight = result.state_dict.get(f"{TEXT_GUIDED_MASK_OUTPUT}.weight")
    bias = result.state_dict.get(f"{TEXT_GUIDED_MASK_OUTPUT}.bias")
    if weight is not None and not allow_zero_text_guided_mask:
        if not bool(weight.any()) and (bias is None or not bool(bias.any())):
            raise TGLlavaCheckpointError(
                "TG-FOM's output layer (official mm_cross_attn.zero_layer) is all zeros: the "
                "text-guided mask is a no-op, as when stage 2 did not load stage 1's mm_cross_attn. "
                "Pass allow_zero_text_guided_mask=True (CLI: --allow-zero-mask) if that is intended."
            )
    logger.info(result.report())
    return result


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read official weights from a checkpoint directory or file, safely.

    Supports ``*.safetensors`` (single or sharded with ``model.safetensors.index.json``) and
    ``.bin`` files (``torch.load(weights_only=True)``: tensors only, no pickled code), including a
    stage-1 directory with ``mm_projector.bin``, ``mm_cross_attn.bin``, ``mm_patch_encoder.bin``.

    Raises:
        TGLlavaCheckpointError: If nothing loadable is found.
    """
    from safetensors.torch import load_file

    path = Path(path)
    files: list[Path]
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    else:
        raise TGLlavaCheckpointError(f"{path}: no such checkpoint file or directory")
    if not files:
        raise TGLlavaCheckpointError(f"{path}: no *.safetensors or *.bin weight files")
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


def to_hf_llava_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our LLaVA-1.5 weights (both TG switches off) in transformers' ``LlavaForConditionalGeneration``
    layout, e.g. to use a baseline trained here with stock transformers.

    The guide tower is dropped (LLaVA-1.5 has none); everything else maps one to one:
    ``vision_tower.*``/``multi_modal_projector.*`` -> ``model.*``, the LLM's decoder ->
    ``model.language_model.*``, its head -> ``lm_head.*``.

    Raises:
        TGLlavaCheckpointError: The weights contain TG-FOM or TG-DP (not a baseline).
    """
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(("text_guided_mask.", "detail_perceiver.")):
            raise TGLlavaCheckpointError(f"{key}: only a LLaVA-1.5 baseline (both TG switches off) maps to LLaVA")
        if key.startswith("guide_tower."):
            continue
        if key.startswith("language_model.lm_head."):
            mapped[key[len("language_model."):]] = value
        elif key.startswith("language_model.model."):
            mapped["model.language_model." + key[len("language_model.model."):]] = value
        else:
            mapped["model." + key] = value
    return mapped


__all__ = [
    "to_hf_llava_state_dict",
    "RENAME_RULES",
    "DROP_RULES",
    "OFFICIAL_MODEL_TYPES",
    "ConversionResult",
    "map_official_key",
    "official_to_hf",
    "load_official_state_dict",
    "read_official_config",
]
