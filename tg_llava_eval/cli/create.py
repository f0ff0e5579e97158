"""``tg-llava-eval create``: write a random-init checkpoint of a preset (offline), or, with
``--vision`` and ``--llm``, a stage-1 start assembled from pretrained CLIP and LLM checkpoints."""

from __future__ import annotations

import argparse
import json
import logging

from ..errors import TGLlavaUsageError

HELP = (
    "write a complete random-init checkpoint of a preset (tokenizers built locally for tiny presets), "
    "or assemble one from pretrained parts (--vision/--llm)"
)
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..variants import list_variants

    parser.add_argument("--variant", default="tiny", help=f"preset name: {', '.join(list_variants())}")
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
    parser.add_argument("--override", metavar="FIELD=VALUE", action="append", default=[],
                        help="change a config field of the preset (repeatable; FIELD may be dotted into a "
                        "sub-config, VALUE is JSON), e.g. text_config.num_hidden_layers=1 for a real-width "
                        "model with one decoder layer (docs/performance.md)")


def parse_overrides(pairs: list[str]) -> dict:
    """``["text_config.num_hidden_layers=1"]`` -> ``{"text_config": {"num_hidden_layers": 1}}``.

    Values are read as JSON (``1``, ``true``, ``"x"``); anything that is not JSON stays a string.

    Raises:
        TGLlavaUsageError: An entry without ``=`` or with an empty field name.
    """
    overrides: dict = {}
    for pair in pairs:
        field, sep, text = pair.partition("=")
        if not sep or not field.strip("."):
            raise TGLlavaUsageError(f"--override {pair!r}: expected FIELD=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = field.split(".")
        target = overrides
        for name in parents:
            target = target.setdefault(name, {})
        target[leaf] = value
    return overrides


def validate(args: argparse.Namespace) -> bool:
    """Check the arguments before the model stack is imported; returns whether to assemble from parts."""
    from .validation import check_output_folder, require_checkpoint, require_dir, require_variant

    require_variant(args.variant)
    check_output_folder(args.output, "-o/--output")
    parse_overrides(args.override)
    assemble = args.vision is not None or args.llm is not None or args.guide is not None
    if assemble and (args.vision is None or args.llm is None):
        raise TGLlavaUsageError("assembling from pretrained parts needs both --vision and --llm")
    for flag in ("vision", "llm", "guide"):
        if getattr(args, flag) is not None:
            require_checkpoint(getattr(args, flag), f"--{flag}")
    for flag in ("tokenizer", "guide_tokenizer"):
        if getattr(args, flag) is not None:
            require_dir(getattr(args, flag), f"--{flag.replace('_', '-')}")
    return assemble


def run(args: argparse.Namespace) -> int:
    from ..errors import TGLlavaError

    assemble = validate(args)
    try:
        if assemble:
            from ..checkpoints.assembling import assemble_checkpoint

            path = assemble_checkpoint(
                args.variant, args.output, vision=args.vision, llm=args.llm, guide=args.guide,
                tokenizer=args.tokenizer, guide_tokenizer=args.guide_tokenizer, seed=args.seed,
                config_overrides=parse_overrides(args.override),
            )
        else:
            from ..checkpoints.creating import create_checkpoint

            path = create_checkpoint(
                args.variant, args.output, seed=args.seed, tokenizer=args.tokenizer,
                guide_tokenizer=args.guide_tokenizer, **parse_overrides(args.override),
            )
    except TGLlavaError as error:
        # assemble_checkpoint names the argument (vision=..., llm=..., guide=...) in its messages:
        # a part of the wrong kind is a usage error.
        raise TGLlavaUsageError(str(error)) from error
    print(path)
    return 0
