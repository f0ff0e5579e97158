"""``tg-llava-eval train {pretrain,finetune}``: one TG-LLaVA training stage.

Usage (any ``TrainingArguments`` flag may follow and overrides the stage recipe)::

    tg-llava-eval train pretrain --variant tiny --data stage1.json --images IMG --output out/s1
    tg-llava-eval train finetune --variant tiny --data stage2.json --images IMG --output out/s2 \\
        --from out/s1 --max_steps 100 --learning_rate 1e-4

Launchers (all start this same entry point, ``main(argv=None)``)::

    torchrun --nproc_per_node 8 -m tg_llava_eval.cli.train pretrain ...
    deepspeed --num_gpus 8 --module tg_llava_eval.cli.train pretrain ...   # adds --local_rank=N
    accelerate launch --num_processes 8 -m tg_llava_eval.cli.train pretrain ...

Before anything heavy is imported, every path, name and the data file are checked
(:func:`tg_llava_eval.training.preflight.check_stage_run`): a bad one is one line naming the
argument, and exit status 2 (1 for a failure at run time; ``-v`` adds the traceback).

DeepSpeed is used where it is needed or asked for (:func:`~tg_llava_eval.training.preflight.use_deepspeed`):
several processes, the ``deepspeed`` launcher, CUDA, ``--with-deepspeed`` or ``--deepspeed FILE``;
a single process on CPU trains with the plain ``Trainer`` (no op compilation), ``--no-deepspeed``
always does. A launcher-less single process with DeepSpeed gets the rendezvous variables DeepSpeed
needs (``RANK=0``, ``WORLD_SIZE=1``, a free local ``MASTER_PORT``); without them DeepSpeed tries MPI
discovery and fails (docs/install.md).

Re-running a command whose output already holds checkpoints resumes from the newest complete one
(docs/training.md §3).

Options may come before or after the stage name; everything this parser does not know is handed
to ``HfArgumentParser(TrainingArguments)``, which names any flag it does not know either.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import pathlib
import socket
import sys
from collections.abc import Sequence

HELP = "train one TG-LLaVA stage: pretrain (feature alignment, ZeRO-2) or finetune (instruction tuning, ZeRO-3)"

#: The stages (= ``tg_llava_eval.training.recipe.RECIPES``; written out so that ``--help`` does
#: not import torch; a unit test keeps the two equal).
STAGES = ("pretrain", "finetune")

logger = logging.getLogger(__name__)
#: Exit statuses: a failure at run time, a usage error (as argparse's own).
EXIT_FAILURE, EXIT_USAGE = 1, 2


def _add_options(parser: argparse.ArgumentParser) -> None:
    """The train options; defaults are suppressed so values given before and after the stage merge."""
    add = parser.add_argument
    add("--variant", default=argparse.SUPPRESS, help="model preset (e.g. tiny, tg-llava-qwen2-7b); must match the checkpoint")
    add("--data", type=pathlib.Path, default=argparse.SUPPRESS, help="LLaVA conversation JSON")
    add("--images", type=pathlib.Path, default=argparse.SUPPRESS, help="folder the rows' image paths are relative to")
    add("--output", type=pathlib.Path, default=argparse.SUPPRESS, help="output folder of the stage")
    add("--model", type=pathlib.Path, default=argparse.SUPPRESS,
        help="starting checkpoint (pretrain: required except for tiny variants; finetune: default --from)")
    add("--from", dest="stage1_dir", type=pathlib.Path, default=argparse.SUPPRESS,
        help="stage-1 output whose adapter groups finetune loads strictly")
    add("--strict-data", action="store_true", default=argparse.SUPPRESS,
        help="a bad row is an error naming it (default: skip, count, report)")
    add("--model-max-length", type=int, default=argparse.SUPPRESS, help="override the recipe's 2048 tokens")
    add("--no-deepspeed", action="store_true", default=argparse.SUPPRESS,
        help="plain Trainer (DDP / single process) instead of the stage's ZeRO config")
    add("--with-deepspeed", action="store_true", default=argparse.SUPPRESS,
        help="use the stage's ZeRO config also for a single process on CPU (default there: plain Trainer)")
    add("--local_rank", "--local-rank", type=int, default=argparse.SUPPRESS,
        help="set by the deepspeed launcher; forwarded to TrainingArguments")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options, the stage, then everything else (``TrainingArguments`` flags and late options)."""
    _add_options(parser)
    parser.add_argument("stage", choices=STAGES, help="pretrain = stage 1, finetune = stage 2")
    parser.add_argument("rest", nargs=argparse.REMAINDER,
                        help="more options and any TrainingArguments flag (--learning_rate, --max_steps, ...)")


def _merge_options(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Options given before the stage + those among ``rest``; the leftovers are HF flags.

    ``argparse.REMAINDER`` swallows everything after the stage name, including this command's own
    options, so ``rest`` is parsed once more with the same option set (``parse_known_args``);
    what is still unknown goes to ``HfArgumentParser(TrainingArguments)``.

    Returns:
        ``(options, hf_flags)``: option name -> value, and the ``TrainingArguments`` flags.

    Raises:
        TGLlavaUsageError: a required option is missing.
    """
    from tg_llava_eval.errors import TGLlavaUsageError

    late = argparse.ArgumentParser(prog=f"tg-llava-eval train {args.stage}", add_help=False)
    _add_options(late)
    known, hf_flags = late.parse_known_args(args.rest)
    options = {k: v for k, v in vars(args).items() if k not in ("rest", "_run", "verbose", "command")}
    options.update(vars(known))
    missing = [name for name in ("variant", "data", "images", "output") if name not in options]
    if missing:
        raise TGLlavaUsageError(f"missing required option(s): {', '.join(f'--{m}' for m in missing)}")
    # The deepspeed launcher adds --local_rank=N; TrainingArguments still has that field.
    if "local_rank" in options:
        hf_flags = ["--local_rank", str(options["local_rank"])] + hf_flags
    return options, hf_flags


def _single_process_rendezvous() -> None:
    """Rendezvous variables for a launcher-less DeepSpeed run (one process, a free local port)."""
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port))):
        os.environ.setdefault(name, value)
    logger.info("single-process DeepSpeed run: rendezvous on 127.0.0.1:%s", port)


def _destroy_process_group() -> None:
    """Tear down the process group a run started (DDP or DeepSpeed), if one is still up.

    Registered with :mod:`atexit` by :func:`run`: a gloo group left to the interpreter's own
    teardown can abort a rank with ``terminate called without an active exception`` after
    training has finished (seen under torchrun on CPU), turning a finished run into a failed
    launch. At exit, not after each run: DeepSpeed keeps the group for later runs in the same
    process (resuming in-process, as a test does).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _cuda_available() -> bool:
    """Whether CUDA is usable (imports torch, not DeepSpeed)."""
    import torch

    return torch.cuda.is_available()


def _stage_run(args: argparse.Namespace):
    """Options -> a checked :class:`~tg_llava_eval.training.preflight.StageRun` (torch-free).

    Raises:
        TGLlavaUsageError: the first bad argument (one line naming it).
    """
    from tg_llava_eval.errors import TGLlavaUsageError
    from tg_llava_eval.training.preflight import StageRun, check_stage_run, use_deepspeed

    options, hf_flags = _merge_options(args)
    if options.get("no_deepspeed") and options.get("with_deepspeed"):
        raise TGLlavaUsageError("--no-deepspeed and --with-deepspeed contradict each other: give one")
    if options.get("model_max_length") is not None and options["model_max_length"] <= 0:
        raise TGLlavaUsageError(f"--model-max-length {options['model_max_length']}: must be > 0")
    stage_run = StageRun(
        stage=args.stage,
        variant=options["variant"],
        data_path=options["data"],
        image_dir=options["images"],
        output_dir=options["output"],
        model_path=options.get("model"),
        stage1_dir=options.get("stage1_dir"),
        strict_data=options.get("strict_data", False),
        model_max_length=options.get("model_max_length"),
        training_flags=tuple(hf_flags),
    )
    check_stage_run(stage_run, stages=STAGES)
    forced = False if options.get("no_deepspeed") else True if options.get("with_deepspeed") else None
    wanted, reason = use_deepspeed(forced=forced, training_flags=hf_flags, environ=os.environ,
                                   launched_by_deepspeed="local_rank" in options, cuda_available=_cuda_available)
    logger.info("DeepSpeed %s: %s", "on" if wanted else "off", reason)
    return dataclasses.replace(stage_run, use_deepspeed=wanted)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, then train the stage; prints a JSON summary on the main process.

    Returns:
        0 on success; 2 for a usage error (a bad path, name, data file or flag: logged as one
        line naming the argument, before anything heavy starts); 1 when the run fails later on a
        named input or checkpoint error. Launchers see the failure either way.
    """
    from tg_llava_eval.errors import TGLlavaConfigError, TGLlavaError, TGLlavaUsageError

    try:
        stage_run = _stage_run(args)
        if stage_run.use_deepspeed:
            _single_process_rendezvous()
        # Imported here, not at module level: `tg-llava-eval --help` must not pay for torch.
        from tg_llava_eval.training.trainer import run_stage

        atexit.unregister(_destroy_process_group)  # once per process, however many runs
        atexit.register(_destroy_process_group)
        report = run_stage(stage_run)
    except TGLlavaError as error:
        usage = isinstance(error, (TGLlavaUsageError, TGLlavaConfigError))
        logger.debug("traceback of the error below", exc_info=True)
        logger.error("tg-llava-eval train %s: error: %s", args.stage, " ".join(str(error).split("\n")))
        return EXIT_USAGE if usage else EXIT_FAILURE
    # The CLI's real output, once: the main process prints the summary as one JSON line.
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {
            "output": str(stage_run.output_dir),
            "stage": report["stage"],
            "train_loss": report["metrics"].get("train_loss"),
            "effective_global_batch": report["effective_global_batch"],
            "skipped_by_reason": report["data"]["skipped_by_reason"],
            "resumed_from": report["resumed_from"],
        }
        print(json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for launchers: ``python -m tg_llava_eval.cli.train STAGE ...``."""
    parser = argparse.ArgumentParser(prog="python -m tg_llava_eval.cli.train", description=HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        # Other ranks log warnings only: the tables and summaries would repeat once per rank.
        level=logging.DEBUG if args.verbose else logging.INFO if rank == "0" else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
