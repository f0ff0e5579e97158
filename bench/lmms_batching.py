"""Throughput of the lmms-eval wrapper at batch sizes 1, 4 and 8 on the tiny config (prints JSON).

What is measured: ``TGLlava.generate_until`` — the real lmms-eval ``Instance`` tuples through the
wrapper and the inference engine (left-padded batches, conversation template, text guide,
generation) — on ``N`` synthetic documents with distinct images and questions of varied length,
once per batch size, in one process, after a warm-up. Model loading is not timed. The figures
are reported as ratios to batch size 1 from the same run, because absolute times on a shared CPU
mean little; the answers of every batch size are also compared (``"identical_answers"``).

Usage::

    python bench/lmms_batching.py                       # builds a tiny checkpoint in a temp dir
    python bench/lmms_batching.py --checkpoint DIR --requests 64 --device cuda:0

Output (one JSON object on stdout)::

    {"benchmark": "lmms_batching", "variant": "tiny", "device": "cpu", "requests": 32,
     "max_new_tokens": 8, "seconds": {"1": ..., "4": ..., "8": ...},
     "requests_per_s": {...}, "speedup_vs_batch_1": {"1": 1.0, "4": ..., "8": ...},
     "identical_answers": true, ...}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from bench_common import keep_stdout_for_json  # noqa: E402 - bench/ is the script folder
from lmms_eval.api.instance import Instance
from PIL import Image

from tg_llava_eval.checkpoints.creating import create_checkpoint
from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

logger = logging.getLogger(__name__)

TASK, SPLIT = "bench_synthetic", "test"
#: Question stems of different lengths, so that a batch really needs padding.
QUESTIONS = (
    "What colour is the picture?",
    "Describe the main colour of this image in one word.",
    "Look carefully at the whole picture, including the corners, and tell me which single colour covers most of it.",
    "Is it red?",
)


def synthetic_docs(count: int) -> list[dict]:
    """``count`` documents with distinct solid-colour images of varied sizes (no cache hits).

    Returns:
        Dicts with ``image`` (PIL RGB) and ``question``.
    """
    docs = []
    for i in range(count):
        colour = ((37 * i) % 256, (91 * i + 40) % 256, (53 * i + 90) % 256)
        size = (24 + 4 * (i % 5), 20 + 3 * (i % 7))
        docs.append({"image": Image.new("RGB", size, colour), "question": QUESTIONS[i % len(QUESTIONS)]})
    return docs


def doc_to_visual(doc: dict) -> list[Image.Image]:
    """The lmms-eval ``doc_to_visual`` of the synthetic task."""
    return [doc["image"]]


def build_instances(docs: list[dict], max_new_tokens: int) -> list[Instance]:
    """lmms-eval ``generate_until`` Instances as ``ConfigurableTask.construct_requests`` builds them."""
    gen_kwargs = {"max_new_tokens": max_new_tokens, "temperature": 0, "until": ["\n"], "do_sample": False}
    return [
        Instance(
            request_type="generate_until",
            arguments=(doc["question"], dict(gen_kwargs), doc_to_visual, doc_id, TASK, SPLIT),
            idx=0,
            metadata={"task": TASK, "doc_id": doc_id, "repeats": 1},
        )
        for doc_id, doc in enumerate(docs)
    ]


def time_batch_size(checkpoint: Path, batch_size: int, docs: list[dict], args: argparse.Namespace) -> tuple[float, list[str]]:
    """Load the wrapper with ``batch_size``, warm up, and time one pass over all documents.

    Returns:
        ``(seconds, answers)``.
    """
    model = TGLlava(pretrained=str(checkpoint), batch_size=batch_size, device=args.device, dtype=args.dtype)
    model.task_dict = {TASK: {SPLIT: docs}}
    model.generate_until(build_instances(docs[: max(batch_size, 2)], args.max_new_tokens))  # warm-up
    instances = build_instances(docs, args.max_new_tokens)
    if torch.cuda.is_available() and str(model.device).startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    outputs = model.generate_until(instances)
    if torch.cuda.is_available() and str(model.device).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, [output.text for output in outputs]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint dir (default: a fresh tiny one)")
    parser.add_argument("--variant", default="tiny", help="variant created when --checkpoint is not given")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    keep_stdout_for_json()
    logging.basicConfig(level=logging.WARNING)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or create_checkpoint(args.variant, Path(tmp) / args.variant, seed=0)
        docs = synthetic_docs(args.requests)
        seconds, answers = {}, {}
        for batch_size in batch_sizes:
            seconds[batch_size], answers[batch_size] = time_batch_size(Path(checkpoint), batch_size, docs, args)
    base = seconds[batch_sizes[0]]
    report = {
        "benchmark": "lmms_batching",
        "variant": args.variant if args.checkpoint is None else str(args.checkpoint),
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "requests": args.requests,
        "max_new_tokens": args.max_new_tokens,
        "seconds": {str(b): round(s, 4) for b, s in seconds.items()},
        "requests_per_s": {str(b): round(args.requests / s, 3) for b, s in seconds.items()},
        f"speedup_vs_batch_{batch_sizes[0]}": {str(b): round(base / s, 3) for b, s in seconds.items()},
        "identical_answers": all(answers[b] == answers[batch_sizes[0]] for b in batch_sizes),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
