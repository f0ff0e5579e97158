"""``tg-llava-eval create``: write a random-init checkpoint of a preset (offline)."""

from __future__ import annotations

import argparse
import logging

HELP = "write a complete random-init checkpoint of a preset (tokenizers built locally for tiny presets)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..variants import list_variants

    parser.add_argument("--variant", default="tiny", choices=list_variants(), help="preset name")
    parser.add_argument("-o", "--output", required=True, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed")
    parser.add_argument("--tokenizer", help="LLM tokenizer directory (required for real-size presets)")
    parser.add_argument("--guide-tokenizer", help="CLIP tokenizer directory (default: built from the CLIP BPE)")


def run(args: argparse.Namespace) -> int:
    from ..create import create_checkpoint

    path = create_checkpoint(
        args.variant, args.output, seed=args.seed, tokenizer=args.tokenizer, guide_tokenizer=args.guide_tokenizer
    )
    print(path)
    return 0
