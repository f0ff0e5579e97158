"""``tg-llava-eval create``: write a random-init checkpoint of a preset (offline), or, with
``--vision`` and ``--llm``, a stage-1 start assembled from pretrained CLIP and LLM checkpoints."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = (
    "write a complete random-init checkpoint of a preset (tokenizers built locally for tiny presets), "
    "or assemble one from pretrained parts (--vision/--llm)"
)
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..variants import list_variants

    parser.add_argument("--variant", default="tiny", choices=list_variants(), help="preset name")
    parser.add_argument("-o", "--output", required=True, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed")
    parser.add_argument("--tokenizer", help="LLM tokenizer directory (required for real-size random-init presets; "
                        "default with --llm: the LLM directory's)")
    parser.add_argument("--guide-tokenizer", help="CLIP tokenizer directory (default: the CLIP directory's "
                        "when it has one, else built from the CLIP BPE)")
    parser.add_argument("--vision", metavar="DIR", help="pretrained CLIP checkpoint (CLIPModel, or CLIPVisionModel "
                        "with --guide): assemble a stage-1 start instead of random init (needs --llm)")
    parser.add_argument("--llm", metavar="DIR", help="pretrained causal-LM checkpoint (Llama, Qwen2, ...)")
    parser.add_argument("--guide", metavar="DIR", help="CLIP checkpoint of the guide (text) tower "
                        "(default: the text tower of --vision)")


def _missing_directory(args: argparse.Namespace) -> str | None:
    """The first path argument that is given but is not a directory, as ``--flag``."""
    for flag in ("vision", "llm", "guide", "tokenizer", "guide_tokenizer"):
        value = getattr(args, flag)
        if value is not None and not Path(value).is_dir():
            return f"--{flag.replace('_', '-')}: no such directory: {value}"
    return None


def run(args: argparse.Namespace) -> int:
    from ..errors import TGLlavaError

    assemble = args.vision is not None or args.llm is not None or args.guide is not None
    if assemble and (args.vision is None or args.llm is None):
        print("error: assembling from pretrained parts needs both --vision and --llm", file=sys.stderr)
        return 2
    problem = _missing_directory(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        if assemble:
            from ..checkpoints.assembling import assemble_checkpoint

            path = assemble_checkpoint(
                args.variant, args.output, vision=args.vision, llm=args.llm, guide=args.guide,
                tokenizer=args.tokenizer, guide_tokenizer=args.guide_tokenizer, seed=args.seed,
            )
        else:
            from ..checkpoints.creating import create_checkpoint

            path = create_checkpoint(
                args.variant, args.output, seed=args.seed, tokenizer=args.tokenizer,
                guide_tokenizer=args.guide_tokenizer,
            )
    except TGLlavaError as error:
        # assemble_checkpoint names the argument (vision=..., llm=..., guide=...) in its messages.
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
