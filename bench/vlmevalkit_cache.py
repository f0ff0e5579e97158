"""Benchmark: a VLMEvalKit MCQ benchmark with the vision-feature cache on vs off; prints one JSON object.

The benchmark is a local 64-question MCQ table with 4 questions per image (16 images), the shape of
MMBench's circular evaluation, where every image comes back once per rotated option order.
VLMEvalKit dumps each row's image to its own file (``<index>.png``), so the cache — keyed by image
content — is what lets the frozen vision tower run once per image instead of once per question.

What is timed: VLMEvalKit's own inference loop (``vlmeval.inference.infer_data_job``, the function
``run.py`` calls per dataset) plus exact-matching evaluation, on the real ``CustomMCQDataset``, for
two ``TGLLaVA`` instances that differ only in ``cache_vision``. Model loading and a short warm-up
(on other images) are outside the timed region. Both settings are measured in the same process,
alternating ``--repeats`` times; the reported figure is the ratio of the medians.

Usage::

    python bench/vlmevalkit_cache.py                       # tiny random checkpoint, CPU
    python bench/vlmevalkit_cache.py --model-path ckpts/tg-qwen2 --max-new-tokens 1 --repeats 3

Output keys: ``wall_s_cache_off``, ``wall_s_cache_on`` (medians), ``speedup`` (off / on),
``tower_calls_off``/``tower_calls_on`` (images run through the vision tower) and ``cache_hits_on``
(from ``engine.cache_info()``, last timed run of each setting; the cache is cleared before each),
and the settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_common import keep_stdout_for_json, tiny_datasets  # noqa: E402 - bench/ is the script folder

BENCH_NAME = "tg_bench_cache"
WARMUP_NAME = "tg_bench_warmup"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (all have defaults: the issue's 64 questions, 4 per image)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default=None, help="checkpoint (default: a fresh tiny random one)")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--per-image", type=int, default=4, help="questions per image")
    parser.add_argument("--max-new-tokens", type=int, default=1, help="an MCQ answer is one letter")
    parser.add_argument("--repeats", type=int, default=1, help="alternating off/on measurements")
    parser.add_argument("--device", default=None)
    return parser


def _timed_benchmark(model, dataset_name: str, work_dir: Path, model_name: str) -> float:
    """Wall seconds of VLMEvalKit's inference loop + exact-matching evaluation of a dataset.

    The dataset object is built fresh (untimed): ``infer_data_job`` drops its ``image`` column.
    """
    from vlmeval.dataset import build_dataset
    from vlmeval.inference import infer_data_job
    from vlmeval.smp import get_pred_file_path

    dataset = build_dataset(dataset_name)
    work_dir.mkdir(parents=True)
    start = time.perf_counter()
    infer_data_job(model, work_dir=str(work_dir), model_name=model_name, dataset=dataset)
    dataset.evaluate(get_pred_file_path(str(work_dir), model_name, dataset.dataset_name), model="exact_matching", nproc=1)
    return time.perf_counter() - start


def main(argv=None) -> int:
    """Write the tables, load two models (cache off / on), time them alternately, print the JSON.

    Args:
        argv: Command line without the program name (default ``sys.argv[1:]``).

    Returns:
        Exit status 0.
    """
    args = build_parser().parse_args(argv)
    keep_stdout_for_json()
    if args.questions % args.per_image:
        raise SystemExit(f"--questions ({args.questions}) must be a multiple of --per-image ({args.per_image})")
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tiny = tiny_datasets()
    with tempfile.TemporaryDirectory(prefix="tg_cache_bench_") as tmp:
        tmp = Path(tmp)
        lmu = tmp / "LMUData"
        lmu.mkdir()
        os.environ["LMUData"] = str(lmu)  # read by VLMEvalKit when it loads/dumps a dataset
        tiny.write_mcq(lmu, BENCH_NAME, n_images=args.questions // args.per_image, questions_per_image=args.per_image)
        # two warm-up rows (any images: the cache is cleared before every timed run)
        tiny.write_mcq(lmu, WARMUP_NAME, n_images=2, questions_per_image=1)

        model_path = args.model_path
        if model_path is None:  # a random tiny checkpoint: the figure is about plumbing, not quality
            from tg_llava_eval.checkpoints.creating import create_checkpoint

            model_path = str(create_checkpoint("tiny", tmp / "tiny", seed=0))

        from tg_llava_eval.model_wrappers.vlmevalkit import TGLLaVA

        models = {
            setting: TGLLaVA(model_path, cache_vision=setting == "on", max_new_tokens=args.max_new_tokens, device=args.device)
            for setting in ("off", "on")
        }
        # One untimed pass each: first-call costs (lazy kernels, tokenizer caches) stay out of the figures.
        for setting, model in models.items():
            _timed_benchmark(model, WARMUP_NAME, tmp / f"warmup_{setting}", f"warmup_{setting}")
        times = {"off": [], "on": []}
        tower_calls = {"off": [], "on": []}
        hits = []
        for repeat in range(args.repeats):
            for setting, model in models.items():
                model.engine.cache.clear()  # a cold cache: hits come from the questions sharing an image
                calls_before = model.engine.cache_info()["tower_calls"]
                seconds = _timed_benchmark(model, BENCH_NAME, tmp / f"run{repeat}_{setting}", f"tg_cache_{setting}")
                times[setting].append(seconds)
                tower_calls[setting].append(model.engine.cache_info()["tower_calls"] - calls_before)
                if setting == "on":
                    hits.append(model.engine.cache_info()["hits"])
        device = str(models["on"].engine.device)

    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    report = {
        "benchmark": "vlmevalkit_cache",
        "toolkit": "ms-vlmeval",
        "questions": args.questions,
        "questions_per_image": args.per_image,
        "images": args.questions // args.per_image,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "checkpoint": args.model_path or "tiny (random init)",
        "device": device,
        "wall_s_cache_off": round(off, 3),
        "wall_s_cache_on": round(on, 3),
        "speedup": round(off / on, 3),
        "tower_calls_off": tower_calls["off"][-1],
        "tower_calls_on": tower_calls["on"][-1],
        "cache_hits_on": hits[-1],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
