"""Converting official TG-LLaVA checkpoints (``AIDC-AI/TG-LLaVA@0009eb8`` layout) to ours, and our
LLaVA-1.5 baselines to transformers' ``LlavaForConditionalGeneration`` layout.

The official model prefixes everything with ``model.`` and names modules after the code's history
(``mm_cross_attn`` = TG-FOM, ``mm_patch_encoder`` = TG-DP, ``zero_layer``, ``resize_linear``); its
Q-Former is a LAVIS BERT with word embeddings, text-branch FFNs and an MLM head that the forward pass
never uses. :data:`RENAME_RULES` is the declared table from their names to ours (transformers'
``Blip2QFormerModel`` / ``Idefics2PerceiverLayer`` / llava-hf role names); :data:`DROP_RULES` lists,
with a reason each, the keys that have no counterpart because they are never computed. The
conversion is strict: a key matched by neither table, or matched twice, is an error; the dropped
keys are reported.

The official code zero-initialises TG-FOM's output layer. A checkpoint whose output layer is still
all zeros has a TG-FOM that does nothing — the classic symptom of forgetting
``--pretrain_mm_cross_attn`` in stage 2 — so :func:`official_to_hf` refuses it unless the caller says
that is intended (``allow_zero_text_guided_mask=True``).

:func:`convert_checkpoint` converts a whole official folder: weights through the table; the LLM
tokenizer is the official folder's, with an ``<image>`` special token added (the official code
splices image features at the fake id -200 instead); the guide tokenizer is CLIP's. The ``<image>``
row is added to the LLM's input and output embeddings, initialised to the mean of the existing rows
(as llava-hf's conversions do), and the preset's padded vocabulary size is used. Loading into our
model is strict: a missing or unexpected key is an error naming it. Rationale:
docs/architecture.md, "Checkpoints".
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ..errors import TGLlavaCheckpointError
from ..inference.engine import resolve_dtype
from ..modeling import TGLlavaForConditionalGeneration
from ..processing import TGLlavaProcessor
from ..variants import get_variant
from .creating import build_tokenizers, config_for_tokenizers, write_checkpoint
from .reading import read_official_config, read_state_dict

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
            "(tg_llava_eval.checkpoints.converting.RENAME_RULES / DROP_RULES)"
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


def hf_llava_config(config):
    """transformers' ``LlavaConfig`` of our LLaVA-1.5 baseline ``config`` (a :class:`TGLlavaConfig`
    with both TG switches off), for :func:`to_hf_llava_state_dict`'s weights.

    Same towers, LLM, projector activation, feature layer and image token; llava-hf's "default"
    feature selection drops the CLS token as ours does, so ``image_seq_length`` is the patch count.

    Raises:
        TGLlavaCheckpointError: ``config`` has TG-FOM or TG-DP switched on (not a baseline).
    """
    from transformers import LlavaConfig

    if config.use_text_guided_mask or config.use_detail_perceiver:
        raise TGLlavaCheckpointError("only a LLaVA-1.5 baseline (both TG switches off) maps to LLaVA")
    return LlavaConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=config.text_config.to_dict(),
        image_token_index=config.image_token_id,
        image_seq_length=config.num_patches,
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act=config.projector_hidden_act,
    )


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


#: Our keys of the LLM's input and output embeddings (rows = vocabulary).
EMBEDDING_KEYS = ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight")


def _grow_rows(tensor: torch.Tensor, rows: int, key: str) -> torch.Tensor:
    """Pad an embedding matrix to ``rows`` rows with the mean row (llava-hf's choice)."""
    if tensor.shape[0] > rows:
        raise TGLlavaCheckpointError(f"{key} has {tensor.shape[0]} rows, more than the preset's vocab_size {rows}")
    if tensor.shape[0] == rows:
        return tensor
    mean = tensor.float().mean(dim=0, keepdim=True).to(tensor.dtype)
    return torch.cat([tensor, mean.expand(rows - tensor.shape[0], -1)], dim=0)


def convert_checkpoint(
    official_dir: str | Path,
    output_dir: str | Path,
    *,
    variant: str,
    guide_tokenizer: str | Path | None = None,
    allow_zero_text_guided_mask: bool = False,
    dtype: str | torch.dtype = "bfloat16",
    config_overrides: dict | None = None,
) -> str:
    """Convert ``official_dir`` into ``output_dir``.

    Args:
        official_dir: Folder with the official weights (safetensors shards or ``.bin``), its
            ``config.json`` and the LLM tokenizer files.
        output_dir: Where to write our checkpoint.
        variant: Preset with the checkpoint's sizes (``tg-llava-qwen2-7b``, ...).
        guide_tokenizer: CLIP tokenizer folder; default: the CLIP BPE built locally (full for
            real presets, truncated as the preset says for tiny ones).
        allow_zero_text_guided_mask: See :func:`official_to_hf`.
        dtype: dtype of the written weights.
        config_overrides: ``TGLlavaConfig`` fields applied to the preset's config (sub-config
            dicts merged, as :meth:`~tg_llava_eval.variants.Variant.config` takes them), e.g.
            ``{"text_config": {"num_hidden_layers": 1}}`` for a depth-reduced test checkpoint.

    Returns:
        The conversion report (also logged).

    Raises:
        TGLlavaCheckpointError: Unknown/missing keys, shape mismatches, a wrong LLM family.
    """
    official_dir, output_dir = Path(official_dir), Path(output_dir)
    preset = get_variant(variant)
    official_config = read_official_config(official_dir)
    llm_type = preset.config().text_config.model_type
    if official_config["llm_model_type"] != llm_type:
        raise TGLlavaCheckpointError(
            f"{official_dir}/config.json is a {official_config['llm_model_type']} model but variant "
            f"{variant!r} expects {llm_type}"
        )
    converted = official_to_hf(
        read_state_dict(official_dir), allow_zero_text_guided_mask=allow_zero_text_guided_mask
    )
    tokenizer = AutoTokenizer.from_pretrained(str(official_dir))
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer, guide = build_tokenizers(preset, tokenizer, guide_tokenizer)
    config = config_for_tokenizers(preset, tokenizer, guide, **copy.deepcopy(dict(config_overrides or {})))
    state = converted.state_dict
    for key in EMBEDDING_KEYS:
        if key in state:
            state[key] = _grow_rows(state[key], config.text_config.vocab_size, key)
    with torch.device("meta"):
        model = TGLlavaForConditionalGeneration(config)
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise TGLlavaCheckpointError(
            f"{official_dir}: after conversion {len(missing)} keys are missing (first: {missing[:5]}) and "
            f"{len(unexpected)} are unexpected (first: {unexpected[:5]}); a full stage-2 checkpoint is needed"
        )
    target = resolve_dtype(dtype)
    state = {k: v.to(target) if v.is_floating_point() and target not in (None, "auto") else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise TGLlavaCheckpointError(f"{official_dir}: {error}") from error
    # Non-persistent buffers (position ids) stay on the meta device: they are not saved and are
    # rebuilt by from_pretrained, so the model is only written here, never run.
    processor = TGLlavaProcessor.from_config(config, tokenizer, guide)
    write_checkpoint(model, processor, output_dir)
    report = converted.report() + f"\nwrote {variant} checkpoint to {output_dir}"
    logger.info(report)
    return report


__all__ = [
    "RENAME_RULES",
    "DROP_RULES",
    "TEXT_GUIDED_MASK_OUTPUT",
    "EMBEDDING_KEYS",
    "ConversionResult",
    "map_official_key",
    "official_to_hf",
    "hf_llava_config",
    "to_hf_llava_state_dict",
    "convert_checkpoint",
]
