"""``tg-llava-eval chat``: one-off question about an image."""

from __future__ import annotations

import argparse

from ..errors import TGLlavaInputError, TGLlavaUsageError

HELP = "ask a checkpoint one question about an image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="the question (the text guide is the question without <image>)")
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument("--image", help="image file (omit for a text-only question)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--template", default=None, help="override the checkpoint's conversation template")


def validate(args: argparse.Namespace) -> None:
    """Paths and values, before the model stack is imported."""
    from ..inference.generation_settings import positive_int
    from .validation import require_checkpoint, require_file

    require_checkpoint(args.model, "--model")
    if args.image is not None:
        require_file(args.image, "--image")
    positive_int(args.max_new_tokens, "--max-new-tokens")
    if args.temperature < 0:
        raise TGLlavaUsageError(f"--temperature {args.temperature}: must be >= 0 (0 = greedy)")
    if not args.question.strip():
        raise TGLlavaUsageError("the question is empty")


def run(args: argparse.Namespace) -> int:
    validate(args)
    from ..inference import GenerationRequest, TGLlavaEngine

    engine = TGLlavaEngine.from_pretrained(args.model, dtype=args.dtype, device=args.device, template=args.template)
    request = GenerationRequest(
        prompt=args.question,
        images=[args.image] if args.image else [],
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
    )
    (result,) = engine.generate([request])
    if result.error:
        raise TGLlavaInputError(result.error)
    print(result.text)
    return 0
