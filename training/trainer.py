"""One training stage of TG-LLaVA on the Hugging Face ``Trainer`` (+ DeepSpeed ZeRO-2/ZeRO-3).

:func:`run_stage` is the recipe, top to bottom (no module globals, no argument bags):

1. the stage's :class:`~tg_llava_eval.training.recipe.StageRecipe` is validated and turned into
   ``TrainingArguments`` defaults; every ``TrainingArguments`` flag given on the command line
   overrides them (``--learning_rate``, ``--max_steps``, ``--deepspeed``, ...). On a machine
   without CUDA ``use_cpu=True`` is set (DeepSpeed then runs on CPU over gloo,
   docs/install.md) and ``tf32`` is left off;
2. the starting model: ``pretrain`` loads ``--model`` (for the ``tiny*`` variants a random-init
   checkpoint is created when none is given); ``finetune`` loads ``--model`` or the stage-1
   output with ``from_pretrained``, then loads the stage-1 groups *strictly* from ``--from``
   (:func:`~tg_llava_eval.training.checkpoints.load_stage1_adapters`). Under ZeRO-3 the
   ``TrainingArguments`` are built first, so ``from_pretrained`` partitions the weights as it
   loads them (``zero.Init``), as the official scripts do;
3. :func:`~tg_llava_eval.training.stages.apply_stage_groups` sets the trainable groups and logs
   the parameter table; the effective global batch is logged next to the paper's;
4. data through :mod:`~tg_llava_eval.training.data` with the processor of the checkpoint, switched
   to the stage's conversation template (stage 1 of Vicuna uses ``plain``);
5. ``Trainer.train``: resuming from ``--resume_from_checkpoint DIR`` or ``last``, and by default
   (``StageRun.auto_resume``) from the newest complete ``checkpoint-N`` already in the output, so
   re-running a killed command continues it; the resumed run restores weights, optimiser,
   schedule, RNG states and the data position, and ends bit-identical on CPU;
6. every save is atomic (:mod:`~tg_llava_eval.training.outputs`): each ``checkpoint-N`` is
   written into a temporary sibling and renamed into place (:meth:`TGLlavaTrainer._save_checkpoint`;
   stage 1 adds its three adapter groups + manifest and the processor there), and the final output
   — ``save_model`` (ZeRO-3: 16-bit weights gathered, ``stage3_gather_16bit_weights_on_model_save``)
   in safetensors, the processor with the checkpoint's *inference* template, for stage 1 the adapter
   groups + manifest, and ``training_report.json`` (recipe, batch sizes, parameter table, skipped
   rows by reason merged over ranks, metrics, loss history) — is written into a temporary folder and
   committed with ``config.json`` last.

The inputs are checked before this runs (:mod:`~tg_llava_eval.training.preflight`, by the CLI).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoConfig, HfArgumentParser, Trainer, TrainingArguments

from tg_llava_eval.errors import TGLlavaCheckpointError, TGLlavaConfigError
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor
from tg_llava_eval.training.checkpoints import load_stage1_adapters, save_stage1_adapters
from tg_llava_eval.training.data import LazySupervisedDataset, ModalityLengthGroupedSampler, SkipReport, TrainingCollator
from tg_llava_eval.training.outputs import (
    CHECKPOINT_PREFIX,
    FINAL_STAGING_NAME,
    INITIAL_CHECKPOINT_DIR,
    REPORT_NAME,
    TRAINER_STATE_NAME,
    commit_final_output,
    copy_final_files,
    finished_step,
    kill_point,
    last_complete_checkpoint,
    replace_directory,
    rotate_checkpoints,
    staging_root,
    warn_leftovers_in,
)
from tg_llava_eval.training.preflight import RESUME_LAST, StageRun
from tg_llava_eval.training.recipe import StageRecipe, get_recipe
from tg_llava_eval.training.stages import apply_stage_groups
from tg_llava_eval.variants import get_variant

logger = logging.getLogger(__name__)

#: ``TrainingArguments`` values the pipeline needs and the command line may not change.
FIXED_ARGUMENTS: dict[str, Any] = {
    # The collator reads the dataset's items whole (samples, images, skipped rows).
    "remove_unused_columns": False,
}


#: Deprecated ``TrainingArguments`` spellings -> current ones. The recipe sets the current name,
#: and transformers ignores the old one when the new one is set, so a user's old-style flag is
#: renamed rather than silently losing to the recipe default.
FLAG_ALIASES: dict[str, str] = {
    "--gradient_checkpointing": "--activation_checkpointing",
    "--gradient_checkpointing_kwargs": "--activation_checkpointing_kwargs",
}


def _normalise_flags(flags: Sequence[str]) -> list[str]:
    """Rename deprecated flags (``--old value`` and ``--old=value`` forms)."""
    renamed = []
    for flag in flags:
        name, sep, value = flag.partition("=")
        renamed.append(FLAG_ALIASES.get(name, name) + sep + value if name.startswith("--") else flag)
    return renamed


def _flag(name: str, value: Any) -> list[str]:
    """``--name value`` as ``HfArgumentParser`` reads it."""
    return [f"--{name}", str(value)]


def build_training_arguments(recipe: StageRecipe, run: StageRun) -> TrainingArguments:
    """``TrainingArguments`` = recipe defaults, device settings, then the user's flags.

    Raises:
        TGLlavaConfigError: an unknown flag, an ``--output_dir`` different from the run's, or a
            flag that changes a :data:`FIXED_ARGUMENTS` value (each named).
    """
    defaults = recipe.training_argument_defaults()
    if not run.use_deepspeed:
        defaults.pop("deepspeed")
    if torch.cuda.is_available():
        defaults["tf32"] = True
    else:
        # DeepSpeed and bf16 on CPU need accelerate's CPU mode (docs/install.md).
        defaults["use_cpu"] = True
    flags = ["--output_dir", str(run.output_dir)]
    for name, value in defaults.items():
        flags += _flag(name, value)
    for name, value in FIXED_ARGUMENTS.items():
        flags += _flag(name, value)
    user_flags = _normalise_flags(run.training_flags)
    parser = HfArgumentParser(TrainingArguments)
    try:
        (args,) = parser.parse_args_into_dataclasses(args=flags + user_flags)
    except ValueError as error:  # unknown flags: "Some specified arguments are not used ..."
        raise TGLlavaConfigError(f"bad TrainingArguments flags {user_flags}: {error}") from error
    except SystemExit as error:  # argparse exits on a malformed value after printing why
        raise TGLlavaConfigError(f"bad TrainingArguments flags {user_flags} (argparse message above)") from error
    if pathlib.Path(args.output_dir).resolve() != run.output_dir.resolve():
        raise TGLlavaConfigError(f"--output_dir {args.output_dir} conflicts with --output {run.output_dir}")
    for name, value in FIXED_ARGUMENTS.items():
        if getattr(args, name) != value:
            raise TGLlavaConfigError(f"--{name} must stay {value} for TG-LLaVA training (got {getattr(args, name)})")
    return args


def effective_global_batch(args: TrainingArguments) -> int:
    """Samples per optimiser step over all ranks: per device × accumulation × world size."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if _distributed():
        torch.distributed.barrier()


def _shared_pid() -> int:
    """The main process's id on every rank: the name of the temporary folder all ranks write into."""
    pid = [os.getpid()]
    if _distributed():
        torch.distributed.broadcast_object_list(pid, src=0)
    return int(pid[0])


class TGLlavaTrainer(Trainer):
    """``Trainer`` with the modality-length grouped sampler, skipped-row accounting and atomic
    checkpoints.

    Args:
        group_by_modality_length: use :class:`ModalityLengthGroupedSampler`.
        skip_report: receives the rows the dataset skipped lazily (travelling with the batches).
        stage1_processor: stage 1: the processor written, with the adapter groups and their
            manifest, into every ``checkpoint-N`` (the official trainer also saved the adapters per
            checkpoint), so that ``--from`` may name a checkpoint; ``None`` for stage 2.
        Other arguments: as ``Trainer``.
    """

    def __init__(self, *args, group_by_modality_length: bool, skip_report: SkipReport,
                 stage1_processor: TGLlavaProcessor | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.group_by_modality_length = group_by_modality_length
        self.skip_report = skip_report
        self.stage1_processor = stage1_processor
        # Set only while _save_checkpoint runs: where the Trainer writes the checkpoint.
        self._checkpoint_staging: pathlib.Path | None = None

    def _get_output_dir(self, trial) -> str:
        if self._checkpoint_staging is not None:
            return str(self._checkpoint_staging)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Write ``checkpoint-N`` atomically: the Trainer writes it (weights, optimiser, scheduler,
        RNG states, ``trainer_state.json``) into ``.checkpoint-N.tmp-<pid>/``; stage 1 adds the
        adapters and the processor; once every rank is done the main process renames it into
        place and removes checkpoints beyond ``save_total_limit`` (renamed aside first)."""
        output_dir = pathlib.Path(self.args.output_dir)
        step = self.state.global_step
        target = output_dir / f"{CHECKPOINT_PREFIX}-{step}"
        root = staging_root(target, _shared_pid())
        self._checkpoint_staging = root
        try:
            # Its own rotation runs inside the temporary root (which holds only this checkpoint).
            super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_staging = None
        staged = root / target.name
        if self.stage1_processor is not None:
            save_stage1_adapters(self.model, staged, is_main_process=self.args.should_save)
            if self.args.should_save:
                self.stage1_processor.save_pretrained(staged)
        _barrier()  # every rank has written its part (RNG states, ZeRO shards)
        if self.args.should_save:
            kill_point("checkpoint-staged", step)
            replace_directory(staged, target)
            root.rmdir()
            kill_point("checkpoint-promoted", step)
            rotate_checkpoints(output_dir, self.args.save_total_limit or 0)
        _barrier()

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_modality_length:
            return super()._get_train_sampler(train_dataset)
        return ModalityLengthGroupedSampler(
            dataset.modality_lengths,
            batch_size=self.args.train_batch_size * self.args.gradient_accumulation_steps,
            world_size=self.args.world_size,
            seed=self.args.seed,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        for reason, index, message in inputs.pop("skipped_rows", ()):
            self.skip_report.add(reason, index, message)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


def _gather_skip_reports(report: SkipReport) -> SkipReport:
    """Merge the skip reports of all ranks (identity without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return report
    state = {reason: (sorted(rows), list(report.examples.get(reason, []))) for reason, rows in report.rows.items()}
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    merged = SkipReport()
    for rank_state in states:
        for reason, (rows, examples) in rank_state.items():
            other = SkipReport()
            other.rows[reason].update(rows)
            other.examples[reason].extend(examples)
            merged.merge(other)
    return merged


def _ensure_deepspeed_comm(args: TrainingArguments) -> None:
    """Attach DeepSpeed's communication layer to the process group before any model loads.

    With ``use_cpu=True`` accelerate initialises ``torch.distributed`` (gloo) but not
    ``deepspeed.comm``; ZeRO-3's ``zero.Init`` inside ``from_pretrained`` would then see a world
    size of 1 and fail its batch-size check. On GPUs accelerate has already done this (no-op).
    """
    if not args.deepspeed:
        return
    import deepspeed

    if not deepspeed.comm.is_initialized():
        backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
        deepspeed.init_distributed(dist_backend=backend)


def _starting_checkpoint(run: StageRun, recipe: StageRecipe, args: TrainingArguments) -> pathlib.Path:
    """The folder ``from_pretrained`` loads at the start of the stage.

    Raises:
        TGLlavaConfigError: no starting point for a non-tiny pretrain, or finetune without ``--from``.
    """
    if recipe.loads_stage1 and run.stage1_dir is None:
        raise TGLlavaConfigError(f"stage {recipe.name!r} needs --from STAGE1_DIR (the output of `train pretrain`)")
    if run.model_path is not None:
        return run.model_path
    if recipe.loads_stage1:
        return run.stage1_dir
    variant = get_variant(run.variant)
    if not variant.tiny:
        raise TGLlavaConfigError(
            f"stage {recipe.name!r} of {run.variant!r} needs --model DIR: a checkpoint holding the pretrained CLIP "
            "towers and LLM (see docs/training.md); only tiny variants start from a random-init model"
        )
    from tg_llava_eval.checkpoints.creating import create_checkpoint

    folder = run.output_dir / INITIAL_CHECKPOINT_DIR
    with args.main_process_first(desc="create the initial checkpoint"):
        if not (folder / "config.json").is_file():
            create_checkpoint(run.variant, folder, seed=args.seed)
    return folder


def _resume_point(run: StageRun, args: TrainingArguments) -> pathlib.Path | None:
    """Where training resumes: ``--resume_from_checkpoint DIR``/``last``, else (``auto_resume``) the
    newest complete ``checkpoint-N`` of the output, else nowhere. Temporaries of killed runs in the
    output are named in a warning and ignored.

    Raises:
        TGLlavaCheckpointError: ``last`` with no complete checkpoint in the output.
    """
    warn_leftovers_in(run.output_dir)
    asked = args.resume_from_checkpoint
    if asked and asked != RESUME_LAST:
        return pathlib.Path(asked)
    last = last_complete_checkpoint(run.output_dir)
    if asked == RESUME_LAST and last is None:
        raise TGLlavaCheckpointError(f"--resume_from_checkpoint last: no complete checkpoint-N in {run.output_dir}")
    if last is not None and (asked or run.auto_resume):
        logger.info("resuming from %s (the newest complete checkpoint in %s)", last, run.output_dir)
        return last
    return None


def _is_final(trainer: TGLlavaTrainer, checkpoint: pathlib.Path) -> bool:
    """Whether ``checkpoint`` is at (or past) the last step of this run."""
    step = finished_step(checkpoint)
    if step is None:
        return False
    if trainer.args.max_steps > 0:
        return step >= trainer.args.max_steps
    # Epoch-based: the run's step count as the Trainer computes it (public API, no training).
    *_, max_steps = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())
    return step >= max_steps


def run_stage(run: StageRun) -> dict[str, Any]:
    """Train one stage end to end and write its outputs (see the module docstring).

    Args:
        run: the request.

    Returns:
        The content of ``training_report.json``.

    Raises:
        TGLlavaConfigError: bad recipe, flags, variant or missing inputs (named).
        TGLlavaCheckpointError: wrong variant in the checkpoint or a bad stage-1 folder.
        TGLlavaInputError / BadRowError: unreadable data, no usable row, or (strict) a bad row.
    """
    recipe = get_recipe(run.stage)
    recipe.validate()
    variant = get_variant(run.variant)
    template = getattr(variant, recipe.template_attribute)
    # TrainingArguments first: under ZeRO-3 they make from_pretrained partition while loading.
    args = build_training_arguments(recipe, run)
    _ensure_deepspeed_comm(args)
    start = _starting_checkpoint(run, recipe, args)

    processor = TGLlavaProcessor.from_pretrained(start)
    if processor.template.name != variant.template:
        # The saved processor would keep this template: training and inference would disagree.
        raise TGLlavaCheckpointError(
            f"{start} renders prompts with the {processor.template.name!r} template but variant {run.variant!r} "
            f"uses {variant.template!r} (a checkpoint made by another version of tg-llava-eval?); delete it or "
            "start from a checkpoint of this variant"
        )
    # Stage 1 of Vicuna trains with `plain`; the saved processor keeps the inference template.
    train_processor = processor if processor.template.name == template else processor.with_template(template)
    config = AutoConfig.from_pretrained(start)
    if getattr(config, "variant", None) != run.variant:
        # Guards against training the wrong model (e.g. --from of another variant).
        raise TGLlavaCheckpointError(f"{start} holds variant {getattr(config, 'variant', None)!r} but --variant is {run.variant!r}")
    max_length = run.model_max_length or recipe.model_max_length
    llm_positions = config.text_config.max_position_embeddings
    if max_length > llm_positions:
        logger.warning("model_max_length %d > the LLM's %d positions: using %d", max_length, llm_positions, llm_positions)
        max_length = llm_positions
    # The data first: a bad file (or, with --strict-data, a bad row) fails before any model loads.
    dataset = LazySupervisedDataset(run.data_path, run.image_dir, train_processor, max_length=max_length, strict=run.strict_data)

    model = TGLlavaForConditionalGeneration.from_pretrained(start, dtype=torch.float32)
    if recipe.loads_stage1:
        load_stage1_adapters(model, run.stage1_dir)
    table = apply_stage_groups(model, recipe.trainable_groups)
    skip_report = SkipReport()
    skip_report.merge(dataset.report)

    global_batch = effective_global_batch(args)
    logger.info(
        "stage %s of %s: template %r, %d rows usable of %d; effective global batch %d "
        "(= %d per device x %d accumulation x %d ranks); paper: %d (README), %d (official script)",
        recipe.name, run.variant, template, len(dataset), dataset.num_rows, global_batch,
        args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size,
        recipe.paper_global_batch, recipe.script_global_batch,
    )
    trainer = TGLlavaTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=TrainingCollator(train_processor),
        group_by_modality_length=recipe.group_by_modality_length,
        skip_report=skip_report,
        stage1_processor=None if recipe.loads_stage1 else processor,
    )
    resume = _resume_point(run, args)
    # The final output: written into a temporary folder inside the output, committed at the end.
    staged = staging_root(run.output_dir / FINAL_STAGING_NAME, _shared_pid())
    if resume is not None and _is_final(trainer, resume):
        # Killed after its last checkpoint, before the final output was committed. `Trainer.train`
        # would run one more step here (it checks for the end only after a step), so the final
        # files are taken from that checkpoint: what `save_model` wrote there at the final step.
        logger.info("%s is the final step of this run: the final output is copied from it", resume)
        state = json.loads((resume / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        trainer.state.log_history = state.get("log_history", [])
        metrics: dict[str, Any] = {}
        if args.should_save:
            copy_final_files(resume, staged)
    else:
        # Grad mode is process-global and other libraries switch it off at import time (importing
        # VLMEvalKit's `vlmeval.vlm` runs `torch.set_grad_enabled(False)`); training needs it on,
        # whatever the caller imported before.
        with torch.enable_grad():
            metrics = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
        trainer.save_model(str(staged))
        if not recipe.loads_stage1:
            save_stage1_adapters(trainer.model, staged, is_main_process=args.should_save)
    skip_report = _gather_skip_reports(skip_report)
    report = {
        "stage": recipe.name,
        "variant": run.variant,
        "template": template,
        "start_checkpoint": str(start),
        "stage1_dir": str(run.stage1_dir) if run.stage1_dir else None,
        "resumed_from": str(resume) if resume else None,
        "recipe": dataclasses.asdict(recipe),
        "effective_global_batch": global_batch,
        "paper_global_batch": recipe.paper_global_batch,
        "script_global_batch": recipe.script_global_batch,
        "world_size": args.world_size,
        "deepspeed": args.deepspeed,
        "parameters": [dataclasses.asdict(row) for row in table],
        "data": {"rows": dataset.num_rows, "usable_before_training": len(dataset), **skip_report.to_dict()},
        "metrics": metrics,
        "log_history": trainer.state.log_history,
    }
    if args.should_save:
        processor.save_pretrained(staged)
        (staged / REPORT_NAME).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    _barrier()
    if args.should_save:
        kill_point("final-staged")
        commit_final_output(staged, run.output_dir)
        logger.info("stage %s: final model written to %s", recipe.name, run.output_dir)
    _barrier()
    level = logging.WARNING if skip_report.total else logging.INFO
    logger.log(level, "data: %d of %d rows skipped %s", skip_report.total, dataset.num_rows, skip_report.counts())
    return report


__all__: Sequence[str] = [
    "StageRun", "run_stage", "build_training_arguments", "effective_global_batch", "TGLlavaTrainer", "REPORT_NAME",
    "INITIAL_CHECKPOINT_DIR",
]
