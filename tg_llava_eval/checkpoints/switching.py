"""Switching TG modules off in a trained checkpoint (an inference-time ablation).

The demo's inference-time ablations (TG-FOM off, TG-DP off) come from here: the same trained
weights with a module removed, not a model retrained without it. Rationale: docs/demo.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..atomic_io import atomic_directory
from ..errors import TGLlavaConfigError
from ..modeling import TGLlavaConfig, TGLlavaForConditionalGeneration
from ..processing import TGLlavaProcessor
from ..variants import get_variant
from .folders import check_output_folder

logger = logging.getLogger(__name__)


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

    Returns:
        ``output_dir``.

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
    check_output_folder(output_dir)
    with atomic_directory(output_dir) as staging:  # a killed write leaves no half checkpoint
        new_model.save_pretrained(staging)
        new_processor.save_pretrained(staging)
    logger.info("wrote %s (%s) from %s with TG-FOM %s, TG-DP %s", output_dir, variant, source,
                "on" if use_text_guided_mask else "off", "on" if use_detail_perceiver else "off")
    return output_dir


__all__ = ["switch_checkpoint"]
