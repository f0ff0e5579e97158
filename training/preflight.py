"""What ``tg-llava-eval train`` checks before any heavy work, and when it uses DeepSpeed (no torch).

:func:`check_stage_run` runs in seconds, before torch, transformers or DeepSpeed are imported and
before a process group starts: every path, name and data file of a :class:`StageRun` is checked
and a bad one is one :class:`~tg_llava_eval.errors.TGLlavaUsageError` line naming the argument,
the value and what was expected (the command exits with status 2). It checks:

=========================  =========================================================================
argument                   requirement
=========================  =========================================================================
``--variant``              a known variant (an unknown one names the closest)
``--images``               an existing folder
``--data``                 an existing file of LLaVA conversation JSON: a non-empty list with at least
                           one usable row; if *no* image that rows reference exists, the image folder
                           is wrong (count + first few named); some missing: a warning (skipped rows)
                           or, with ``--strict-data``, an error naming the first bad row
``--output``               a folder or absent (not a file)
``--model``                a checkpoint folder (``config.json``, weights, ``processor_config.json``)
                           of the ``--variant``, its processor using the variant's template
``--from`` (finetune)      required; such a checkpoint folder that is also a stage-1 output
                           (``stage1_adapters.json`` of the same variant)
``--resume_from_checkpoint``  ``last`` (a complete ``checkpoint-N`` in ``--output`` must exist) or a
                           complete checkpoint folder
``--deepspeed FILE``       an existing file; not together with ``--no-deepspeed``
=========================  =========================================================================

The ``TrainingArguments`` flags themselves are parsed (and unknown ones named) by transformers'
parser when the run starts (:func:`~tg_llava_eval.training.trainer.build_training_arguments`).

**When DeepSpeed is used** (:func:`use_deepspeed`): when asked for (``--with-deepspeed``, or a
``--deepspeed FILE`` flag), never with ``--no-deepspeed``, and otherwise when it is needed: a
launcher started several processes (``WORLD_SIZE`` > 1), the ``deepspeed`` launcher started it
(``--local_rank``), or CUDA is available. A single process on CPU trains with the plain
``Trainer``: DeepSpeed's CPU backend compiles a communication op (minutes on a fresh machine)
before the first step, which a one-process run does not need.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections import Counter
from collections.abc import Mapping, Sequence

from tg_llava_eval.checkpoints.folders import CONFIG_NAME
from tg_llava_eval.checkpoints.folders import checkpoint_problem as checkpoint_folder_problem
from tg_llava_eval.errors import TGLlavaConfigError, TGLlavaError, TGLlavaUsageError
from tg_llava_eval.training.outputs import MANIFEST_NAME, checkpoint_dirs, checkpoint_problem
from tg_llava_eval.training.rows import Entry, check_row, load_llava_json

logger = logging.getLogger(__name__)

#: The processor file ``TGLlavaProcessor.from_pretrained`` needs in a starting checkpoint.
PROCESSOR_CONFIG_NAME = "processor_config.json"
#: Bad rows / missing images named in a message (the counts are always complete).
MAX_NAMED = 3
#: ``--resume_from_checkpoint`` value meaning the newest complete checkpoint of ``--output``.
RESUME_LAST = "last"


@dataclasses.dataclass(frozen=True)
class StageRun:
    """What one ``tg-llava-eval train`` invocation asks for (typed; built by the CLI).

    Attributes:
        stage: ``"pretrain"`` or ``"finetune"``.
        variant: preset name (``tiny``, ``tg-llava-qwen2-7b``, ...); must match the checkpoint.
        data_path: LLaVA conversation JSON.
        image_dir: folder the rows' ``image`` paths are relative to.
        output_dir: where the stage writes its model, checkpoints and report.
        model_path: starting checkpoint (stage 1: required unless the variant is tiny; stage 2:
            default the stage-1 output).
        stage1_dir: stage-1 output with the adapter manifest (stage 2 only, required there).
        strict_data: a bad row is an error naming it instead of being skipped.
        model_max_length: overrides the recipe's 2048.
        use_deepspeed: train under the stage's (or ``--deepspeed``'s) DeepSpeed config; ``False``
            runs the plain Trainer (DDP or single process). The CLI decides with
            :func:`use_deepspeed`.
        auto_resume: without ``--resume_from_checkpoint``, resume from the newest complete
            ``checkpoint-N`` in ``output_dir`` (so re-running a killed command continues it).
        training_flags: ``TrainingArguments`` command-line flags, applied over the recipe.
    """

    stage: str
    variant: str
    data_path: pathlib.Path
    image_dir: pathlib.Path
    output_dir: pathlib.Path
    model_path: pathlib.Path | None = None
    stage1_dir: pathlib.Path | None = None
    strict_data: bool = False
    model_max_length: int | None = None
    use_deepspeed: bool = True
    auto_resume: bool = True
    training_flags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DataCheck:
    """What :func:`check_data` found.

    Attributes:
        rows: rows in the file.
        usable: rows passing the up-front checks.
        skipped: reason -> number of rows failing them.
    """

    rows: int
    usable: int
    skipped: dict[str, int]


def flag_value(flags: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``flags`` (the last one wins)."""
    value = None
    for position, flag in enumerate(flags):
        if flag == name and position + 1 < len(flags):
            value = flags[position + 1]
        elif flag.startswith(name + "="):
            value = flag.partition("=")[2]
    return value


def use_deepspeed(*, forced: bool | None, training_flags: Sequence[str], environ: Mapping[str, str],
                  launched_by_deepspeed: bool, cuda_available) -> tuple[bool, str]:
    """Whether a run uses DeepSpeed, and why (the rule of the module docstring).

    Args:
        forced: ``True`` for ``--with-deepspeed``, ``False`` for ``--no-deepspeed``, else ``None``.
        training_flags: the ``TrainingArguments`` flags (a ``--deepspeed FILE`` asks for it).
        environ: the environment (``WORLD_SIZE`` set by launchers).
        launched_by_deepspeed: the ``deepspeed`` launcher's ``--local_rank`` was given.
        cuda_available: a callable answering whether CUDA is usable (called last: it imports torch).

    Returns:
        ``(use, reason)``.

    Raises:
        TGLlavaUsageError: ``--no-deepspeed`` with ``--deepspeed FILE`` or ``--with-deepspeed``.
    """
    config = flag_value(training_flags, "--deepspeed")
    if forced is False:
        if config:
            raise TGLlavaUsageError(f"--deepspeed {config!r} contradicts --no-deepspeed: give one of them")
        return False, "--no-deepspeed"
    if forced:
        return True, "--with-deepspeed"
    if config:
        return True, f"--deepspeed {config}"
    world_size = environ.get("WORLD_SIZE", "1")
    if world_size.isdigit() and int(world_size) > 1:
        return True, f"{world_size} processes (WORLD_SIZE)"
    if launched_by_deepspeed:
        return True, "started by the deepspeed launcher"
    if cuda_available():
        return True, "CUDA is available"
    return False, "a single process on CPU (use --with-deepspeed to train under DeepSpeed anyway)"


def _usage(argument: str, value: object, problem: str) -> TGLlavaUsageError:
    return TGLlavaUsageError(f"{argument} {str(value)!r}: {problem}")


def _read_json(path: pathlib.Path, argument: str) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _usage(argument, path.parent, f"{path.name} is not readable JSON: {error}") from None
    if not isinstance(content, dict):
        raise _usage(argument, path.parent, f"{path.name} is not a JSON object")
    return content


def check_data(data_path: pathlib.Path, image_dir: pathlib.Path, *, strict: bool) -> DataCheck:
    """Check ``--data`` against ``--images`` the way the dataset will (a stat per image, no decoding).

    Raises:
        TGLlavaUsageError: not a file, not JSON, not a list, empty; no usable row (an image folder
            holding none of the referenced images is named as such, with the count and the first
            few); with ``strict`` any bad row (named as the dataset would).
    """
    if not data_path.exists():
        raise _usage("--data", data_path, "no such file")
    if not data_path.is_file():
        raise _usage("--data", data_path, "is a folder, expected a LLaVA conversation JSON file")
    try:
        rows = load_llava_json(data_path)
    except TGLlavaError as error:
        raise TGLlavaUsageError(f"--data: {error} (expected LLaVA conversation JSON: a list of "
                                "{'id', 'image', 'conversations': [{'from', 'value'}, ...]})") from None
    if not rows:
        raise _usage("--data", data_path, "holds an empty list: no row to train on")
    usable, skipped, missing, first_bad = 0, Counter(), [], None
    for index, row in enumerate(rows):
        checked = check_row(row, index, image_dir)
        if isinstance(checked, Entry):
            usable += 1
            continue
        reason, message = checked
        skipped[reason] += 1
        row_id = row.get("id") if isinstance(row, dict) else None
        label = f"row {index} (id {row_id!r}) of {data_path}"
        first_bad = first_bad or f"{label}: {reason}: {message}"
        if reason == "missing_image":
            missing.append(str(row["image"]))
    named = ", ".join(missing[:MAX_NAMED])
    if missing and not usable and skipped["missing_image"] == sum(skipped.values()):
        raise _usage("--images", image_dir, f"holds none of the {len(missing)} images --data {str(data_path)!r} "
                     f"references (first: {named}); is it the folder the rows' paths are relative to?")
    if not usable:
        raise _usage("--data", data_path, f"not LLaVA conversation data: none of its {len(rows)} rows is usable "
                     f"({dict(skipped)}; first: {first_bad})")
    if strict and first_bad:
        raise TGLlavaUsageError(f"--strict-data: {first_bad}")
    if missing:
        logger.warning("--images %s: %d of the images --data references are missing (first: %s); those rows "
                       "will be skipped and counted", image_dir, len(missing), named)
    return DataCheck(rows=len(rows), usable=usable, skipped=dict(skipped))


def check_checkpoint(path: pathlib.Path, argument: str, variant_name: str) -> None:
    """A starting checkpoint: folder, config + weights + processor, of ``variant_name``, whose
    processor renders prompts with the variant's template.

    Raises:
        TGLlavaUsageError: naming ``argument``.
    """
    from tg_llava_eval.variants import get_variant  # plain data: no torch

    problem = checkpoint_folder_problem(path)
    if problem is not None:
        raise _usage(argument, path, problem)
    if not (path / PROCESSOR_CONFIG_NAME).is_file():
        raise _usage(argument, path, f"has no {PROCESSOR_CONFIG_NAME}: not a TG-LLaVA checkpoint with its processor "
                     "(make one with `tg-llava-eval create` or `convert`)")
    config = _read_json(path / CONFIG_NAME, argument)
    if config.get("variant") != variant_name:
        raise _usage(argument, path, f"holds variant {config.get('variant')!r} but --variant is {variant_name!r}")
    template = _read_json(path / PROCESSOR_CONFIG_NAME, argument).get("template")
    expected = get_variant(variant_name).template
    if template != expected:
        raise _usage(argument, path, f"{path} renders prompts with the {template!r} template but variant "
                     f"{variant_name!r} uses {expected!r} (a checkpoint made by another version of tg-llava-eval?)")


def check_stage1_output(path: pathlib.Path, variant_name: str) -> None:
    """``--from``: a stage-1 output (or ``checkpoint-N``) with the adapter manifest of the variant."""
    if not path.is_dir():
        raise _usage("--from", path, "no such folder" if not path.exists() else "is a file, expected the stage-1 output folder")
    if not (path / MANIFEST_NAME).is_file():
        raise _usage("--from", path, f"has no {MANIFEST_NAME}: not a stage-1 output (run `tg-llava-eval train pretrain`)")
    manifest_variant = _read_json(path / MANIFEST_NAME, "--from").get("variant")
    if manifest_variant != variant_name:
        raise _usage("--from", path, f"holds stage-1 adapters of variant {manifest_variant!r} but --variant is {variant_name!r}")


def check_stage_run(run: StageRun, *, stages: Sequence[str]) -> DataCheck:
    """Every check of the module docstring, in argument order; nothing heavy is imported.

    Args:
        run: the request.
        stages: the known stage names.

    Returns:
        What the data check found (for the log).

    Raises:
        TGLlavaUsageError: the first bad argument, in one line naming it.
    """
    from tg_llava_eval.variants import get_variant  # plain data: no torch

    if run.stage not in stages:
        raise _usage("stage", run.stage, f"unknown; known: {', '.join(stages)}")
    try:
        variant = get_variant(run.variant)
    except TGLlavaConfigError as error:
        raise TGLlavaUsageError(f"--variant: {error}") from None
    if not run.image_dir.is_dir():
        raise _usage("--images", run.image_dir, "no such folder" if not run.image_dir.exists() else "is a file, expected a folder")
    if run.output_dir.exists() and not run.output_dir.is_dir():
        raise _usage("--output", run.output_dir, "is a file, expected a folder (new or of an earlier run)")
    if run.stage == "finetune":
        if run.stage1_dir is None:
            raise TGLlavaUsageError("--from is required for finetune: the stage-1 output (of `train pretrain`)")
        check_stage1_output(run.stage1_dir, run.variant)
        if run.model_path is None:
            check_checkpoint(run.stage1_dir, "--from", run.variant)
    elif run.stage1_dir is not None:
        raise _usage("--from", run.stage1_dir, "only finetune loads a stage-1 output")
    if run.model_path is not None:
        check_checkpoint(run.model_path, "--model", run.variant)
    elif run.stage == "pretrain" and not variant.tiny:
        raise TGLlavaUsageError(f"--model is required for pretrain of {run.variant!r}: a checkpoint holding the "
                                "pretrained CLIP towers and LLM (docs/training.md); only tiny variants start from a "
                                "random-init model")
    config = flag_value(run.training_flags, "--deepspeed")
    if config and not pathlib.Path(config).is_file():
        raise _usage("--deepspeed", config, "no such file (a DeepSpeed JSON config)")
    resume = flag_value(run.training_flags, "--resume_from_checkpoint")
    if resume == RESUME_LAST:
        if all(checkpoint_problem(folder) for folder in checkpoint_dirs(run.output_dir)):
            raise _usage("--resume_from_checkpoint last", run.output_dir, "holds no complete checkpoint-N to resume from")
    elif resume:
        problem = checkpoint_problem(pathlib.Path(resume))
        if problem is not None:
            raise _usage("--resume_from_checkpoint", resume, problem)
    found = check_data(run.data_path, run.image_dir, strict=run.strict_data)
    logger.info("inputs checked: %s, %d of %d rows usable before training", run.data_path, found.usable, found.rows)
    return found

