"""``tg-llava-eval convert``: official TG-LLaVA checkpoint -> our layout, strictly checked."""

from __future__ import annotations

import argparse

HELP = "convert an official TG-LLaVA checkpoint (AIDC-AI/TG-LLaVA layout) to a tg-llava-eval checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..variants import list_variants

    parser.add_argument("official", help="official checkpoint directory (weights + config.json + tokenizer)")
    parser.add_argument("-o", "--output", required=True, help="directory to write")
    parser.add_argument("--variant", required=True, choices=list_variants(),
                        help="preset whose sizes the checkpoint has (e.g. tg-llava-qwen2-7b)")
    parser.add_argument("--guide-tokenizer", default=None,
                        help="CLIP tokenizer directory (default: the CLIP BPE bundled with open-clip-torch)")
    parser.add_argument("--allow-zero-mask", action="store_true",
                        help="accept an all-zero TG-FOM output layer (a TG-FOM that does nothing)")
    parser.add_argument("--dtype", default="bfloat16", help="dtype of the written weights")


def run(args: argparse.Namespace) -> int:
    from ..checkpoints.converting import convert_checkpoint

    report = convert_checkpoint(
        args.official, args.output, variant=args.variant, guide_tokenizer=args.guide_tokenizer,
        allow_zero_text_guided_mask=args.allow_zero_mask, dtype=args.dtype,
    )
    print(report)
    return 0
