"""Directory-level conversion: an official TG-LLaVA checkpoint folder -> a tg-llava-eval checkpoint.

Weights go through the strict key table of :mod:`tg_llava_eval.convert`; the LLM tokenizer is the
official folder's, with an ``<image>`` special token added (the official code splices image features
at the fake id -200 instead); the guide tokenizer is CLIP's. The ``<image>`` row is added to the LLM's
input and output embeddings, initialised to the mean of the existing rows (as llava-hf's conversions
do), and the preset's padded vocabulary size is used. Loading into our model is strict: a missing or
unexpected key is an error naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer

from .convert import load_official_state_dict, official_to_hf, read_official_config
from .create import build_tokenizers, config_for_tokenizers
from .errors import TGLlavaCheckpointError
from .inference.engine import resolve_dtype
from .modeling import TGLlavaForConditionalGeneration
from .processing import TGLlavaProcessor
from .variants import get_variant

logger = logging.getLogger(__name__)

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
) -> str:
    """Convert ``official_dir`` into ``output_dir``.

    Args:
        official_dir: Folder with the official weights (safetensors shards or ``.bin``), its
            ``config.json`` and the LLM tokenizer files.
        output_dir: Where to write our checkpoint.
        variant: Preset with the checkpoint's sizes (``tg-llava-qwen2-7b``, ...).
        guide_tokenizer: CLIP tokenizer folder; default: the CLIP BPE built locally (full for
            real presets, truncated as the preset says for tiny ones).
        allow_zero_text_guided_mask: See :func:`~tg_llava_eval.convert.official_to_hf`.
        dtype: dtype of the written weights.

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
        load_official_state_dict(official_dir), allow_zero_text_guided_mask=allow_zero_text_guided_mask
    )
    tokenizer = AutoTokenizer.from_pretrained(str(official_dir))
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer, guide = build_tokenizers(preset, tokenizer, guide_tokenizer)
    config = config_for_tokenizers(preset, tokenizer, guide)
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
    model.generation_config.eos_token_id = processor.stop_token_ids
    model.generation_config.pad_token_id = processor.pad_token_id
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    report = converted.report() + f"\nwrote {variant} checkpoint to {output_dir}"
    logger.info(report)
    return report


__all__ = ["convert_checkpoint"]
