"""``tg-llava-eval demo``: the whole chain on tiny models and the bundled synthetic benchmark."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..demo import DemoSettings

HELP = "train tiny TG-LLaVA and LLaVA-1.5 models, evaluate them with VLMEvalKit and lmms-eval, build the leaderboard"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (reused phases live here)")
    parser.add_argument("--fresh", action="store_true", help="redo every phase instead of reusing finished ones")
    parser.add_argument("--quick", action="store_true", help="a few steps only (what the test suite runs)")
    parser.add_argument("--seed", type=int, default=0)
    schedule = parser.add_argument_group(
        "schedule", "defaults: tg_llava_eval.demo.DemoSettings; a changed value redoes the phases that depend on it")
    schedule.add_argument("--stage2-rows", type=_positive(int), dest="n_stage2", metavar="N", help="stage-2 training rows")
    schedule.add_argument("--finetune-steps", type=_positive(int), metavar="N", help="stage-2 optimiser steps per model")
    schedule.add_argument("--finetune-lr", type=_positive(float), metavar="LR", help="stage-2 learning rate")
    schedule.add_argument("--pretrain-steps", type=_positive(int), metavar="N", help="stage-1 optimiser steps per model")
    schedule.add_argument("--pretrain-lr", type=_positive(float), metavar="LR", help="stage-1 learning rate")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--components", metavar="DIR", type=_components_dir,
                       help="folder with the pretrained clip/ and llm/ the models are assembled from "
                            "(default: the package's, made by tools/pretrain_tiny_components.py)")
    start.add_argument("--random-init", action="store_true",
                       help="start both models from random weights instead of pretrained parts")


def _components_dir(path: str) -> str:
    """An argparse ``type``: ``path`` resolved, after checking it holds both parts (a missing one is named)."""
    from pathlib import Path

    folder = Path(path).resolve()
    missing = [f"{part}/config.json" for part in ("clip", "llm") if not (folder / part / "config.json").is_file()]
    if missing:
        raise argparse.ArgumentTypeError(f"{path!r} has no {' or '.join(missing)} "
                                         "(expected a folder written by tools/pretrain_tiny_components.py)")
    return str(folder)


def _positive(kind: type) -> Callable[[str], Any]:
    """An argparse ``type`` accepting only values of ``kind`` above zero."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be > 0")
        return value

    return parse


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    """The demo's settings: the default (or ``--quick``) ones with the command line's schedule."""
    import dataclasses

    from ..demo import DemoSettings

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    overrides = {name: getattr(args, name)
                 for name in ("n_stage2", "finetune_steps", "finetune_lr", "pretrain_steps", "pretrain_lr", "components")
                 if getattr(args, name) is not None}
    if args.random_init:
        overrides["components"] = None
    return dataclasses.replace(settings, seed=args.seed, **overrides)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..errors import TGLlavaUsageError

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise TGLlavaUsageError(f"--out {args.out!r}: is a file, expected the demo's output folder")

    # Tiny models are dominated by per-op overhead: one thread per process is several times faster
    # than two competing threads on a 2-core machine (also inherited by the toolkit subprocesses).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    from tqdm.auto import tqdm

    from ..demo import run_demo

    settings = settings_from_args(args)
    bar = tqdm(total=6, desc="demo", unit="phase")

    def progress(message: str) -> None:
        bar.set_postfix_str(message.split(":")[0])
        bar.write(message)
        bar.update(1)

    result = run_demo(args.out, settings, fresh=args.fresh, progress=progress)
    bar.close()
    print(f"\nDemo finished in {sum(result.phase_seconds.values()):.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in result.phase_seconds.items())})")
    if result.reused:
        print(f"reused phases: {', '.join(result.reused)} (use --fresh to redo them)")
    print("\nHeadline accuracy (%), chance in brackets:")
    print(f"{'toolkit':<11} {'benchmark':<13} {'model':<40} {'acc':>6}  (uniform / majority / question prior)")
    for row in result.accuracy_table:
        model = row["model"] if len(row["model"]) <= 40 else "…" + row["model"][-39:]
        print(f"{row['toolkit']:<11} {row['benchmark']:<13} {model:<40} {row['accuracy']:6.1f}  "
              f"({row['chance_uniform']:.0f} / {row['chance_majority']:.0f} / {row['chance_question_prior']:.0f})")
    print(f"\nresults:      {result.results_csv}")
    print(f"leaderboard:  {result.leaderboard_dir} (leaderboard.md, .xlsx, .html + charts)")
    print(f"ablations:    {result.ablation_report}")
    print(f"summary:      {result.summary_path}")
    print("\n" + result.ablation_report.read_text())
    return 0
