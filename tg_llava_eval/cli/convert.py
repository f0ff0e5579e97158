"""``tg-llava-eval convert``: official TG-LLaVA checkpoint -> our layout, strictly checked."""

from __future__ import annotations

import argparse

HELP = "convert an official TG-LLaVA checkpoint (AIDC-AI/TG-LLaVA layout) to a tg-llava-eval checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("official", help="official checkpoint directory (weights + config.json + tokenizer)")
    parser.add_argument("-o", "--output", required=True, help="directory to write")
    parser.add_argument("--variant", required=True,
                        help="preset whose sizes the checkpoint has (e.g. tg-llava-qwen2-7b; tg-llava-eval create -h lists them)")
    parser.add_argument("--guide-tokenizer", default=None,
                        help="CLIP tokenizer directory (default: the CLIP BPE bundled with open-clip-torch)")
    parser.add_argument("--allow-zero-mask", action="store_true",
                        help="accept an all-zero TG-FOM output layer (a TG-FOM that does nothing)")
    parser.add_argument("--dtype", default="bfloat16", help="dtype of the written weights")


def run(args: argparse.Namespace) -> int:
    from .validation import check_output_folder, require_checkpoint, require_dir, require_variant

    require_checkpoint(args.official, "official checkpoint")
    check_output_folder(args.output, "-o/--output")
    require_variant(args.variant)
    if args.guide_tokenizer is not None:
        require_dir(args.guide_tokenizer, "--guide-tokenizer")
    from ..checkpoints.converting import convert_checkpoint

    report = convert_checkpoint(
        args.official, args.output, variant=args.variant, guide_tokenizer=args.guide_tokenizer,
        allow_zero_text_guided_mask=args.allow_zero_mask, dtype=args.dtype,
    )
    print(report)
    return 0
