"""The stage output folder: its file names, complete checkpoints, and atomic saves (no torch).

A stage writes everything under ``--output DIR``::

    DIR/initial_checkpoint/      random-init start of a tiny variant (written atomically by `create`)
    DIR/checkpoint-N/            the Trainer's checkpoints (weights, optimiser, scheduler, RNG, state)
    DIR/config.json, model.safetensors, processor files, stage-1 adapters, training_report.json

Every save is atomic, so a SIGKILL at any moment leaves the previous complete output or none
(docs/training.md, section 3):

* **checkpoints**: the Trainer writes ``checkpoint-N`` into a hidden temporary sibling
  ``DIR/.checkpoint-N.tmp-<pid>/`` (:func:`staging_root`); when every rank has finished writing,
  the main process renames it into place (:func:`replace_directory`). Old checkpoints are removed
  by renaming them aside first (``.checkpoint-K.old-<pid>``, :func:`remove_directory`), so a
  half-deleted folder never keeps a trusted name;
* **the final model**: its files are written into ``DIR/.model.tmp-<pid>/``, then committed
  (:func:`commit_final_output`) with ``config.json`` as the commit record: the old
  ``config.json`` is removed first, the other files are renamed over the old ones, and the new
  ``config.json`` is renamed in last. Every loader (``from_pretrained``, the command lines'
  checks) needs ``config.json``, so between the first and the last rename the folder holds no
  model, before it the previous one and after it the new one. The checkpoints stay where they are
  (a whole-folder swap would have to move them, and a kill in between would lose them).

A later run that finds a temporary left by a killed one logs a warning naming it and ignores it
(:func:`warn_leftovers_in`); a ``checkpoint-N`` without the Trainer's last file
(``trainer_state.json``), e.g. one written by an older, non-atomic version, is skipped with a
warning when choosing where to resume (:func:`last_complete_checkpoint`).

Names follow :mod:`tg_llava_eval.atomic_io` (``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>``). Under
several ranks every rank must write into the *same* temporary folder, so its ``<pid>`` is the main
process's (the trainer broadcasts it). Multi-node runs without a shared file system are not covered.

Test hook: with ``TG_LLAVA_EVAL_KILL_AT=<point>[:<step>]`` in the environment the process SIGKILLs
itself at that point of a save (:data:`KILL_POINTS`); the resume test uses it to stop a run at
deterministic places. Unset (always, outside that test) it does nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path

from tg_llava_eval.atomic_io import REPLACED_INFIX, TEMPORARY_INFIX, replace_directory, temporary_sibling
from tg_llava_eval.checkpoints.folders import CONFIG_NAME

logger = logging.getLogger(__name__)

#: Written to the stage output folder (and the commit record's companions).
REPORT_NAME = "training_report.json"
#: Sub-folder of the output where a tiny variant's random-init starting checkpoint is created.
INITIAL_CHECKPOINT_DIR = "initial_checkpoint"
#: Manifest file name of the stage-1 adapters in a stage-1 output (or checkpoint) folder.
MANIFEST_NAME = "stage1_adapters.json"
#: The Trainer's checkpoint folder prefix (``transformers.trainer_utils.PREFIX_CHECKPOINT_DIR``).
CHECKPOINT_PREFIX = "checkpoint"
#: The file the Trainer writes last into a checkpoint: without it the checkpoint is incomplete.
TRAINER_STATE_NAME = "trainer_state.json"
#: The final output's commit record (see the module docstring).
COMMIT_FILE = CONFIG_NAME
#: Name whose temporary sibling (``.model.tmp-<pid>``) stages the final output inside the folder.
FINAL_STAGING_NAME = "model"

#: What a checkpoint holds of the final output (``save_model``'s files and the stage-1 adapters),
#: copied when a resumed run finds its last checkpoint already at the final step.
FINAL_FILES_IN_CHECKPOINT = (CONFIG_NAME, "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                             "training_args.bin", MANIFEST_NAME)

#: Environment variable of the test hook, and the points it can stop a run at.
KILL_AT_ENV = "TG_LLAVA_EVAL_KILL_AT"
KILL_POINTS = (
    "checkpoint-staged",    # checkpoint-N fully written in its temporary folder, not yet renamed
    "checkpoint-promoted",  # checkpoint-N renamed into place, older ones not yet rotated out
    "checkpoint-rotating",  # an old checkpoint renamed aside, not yet deleted
    "final-staged",         # the final output fully written in its temporary folder
    "final-committing",     # config.json removed, some of the new files renamed in
)

_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")
_LEFTOVER_RE = re.compile(rf"^\.(.+)({re.escape(TEMPORARY_INFIX)}|{re.escape(REPLACED_INFIX)})(\d+)$")


def kill_point(point: str, step: int | None = None) -> None:
    """Test hook: SIGKILL this process if :data:`KILL_AT_ENV` names ``point`` (and ``step``).

    Raises:
        ValueError: the variable names a point that does not exist (a typo would never fire).
    """
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted:
        return
    name, _, at_step = wanted.partition(":")
    if name not in KILL_POINTS:
        raise ValueError(f"{KILL_AT_ENV}={wanted!r}: unknown point {name!r}; known: {', '.join(KILL_POINTS)}")
    if name == point and (not at_step or step is None or int(at_step) == step):
        logger.warning("%s=%s: killing this process (test hook)", KILL_AT_ENV, wanted)
        logging.shutdown()  # flush the log before the signal, which cannot be caught
        os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_step(path: Path) -> int | None:
    """``N`` of a ``checkpoint-N`` folder name, ``None`` for any other name."""
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, oldest (smallest ``N``) first."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint to resume from (``None`` when it is one)."""
    if not folder.is_dir():
        return "no such folder"
    if not (folder / TRAINER_STATE_NAME).is_file():
        return f"has no {TRAINER_STATE_NAME} (incomplete: written by a run that was stopped?)"
    return None


def leftovers_in(folder: Path) -> list[Path]:
    """Temporaries (``.<name>.tmp-<pid>``, ``.<name>.old-<pid>``) directly inside ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _LEFTOVER_RE.match(p.name))


def warn_leftovers_in(folder: Path) -> list[Path]:
    """Log one warning naming the temporaries killed runs left in ``folder`` (they are ignored)."""
    found = leftovers_in(folder)
    if found:
        logger.warning(
            "%s: ignoring %d incomplete save(s) left by a run that was killed: %s (safe to delete)",
            folder, len(found), ", ".join(p.name for p in found),
        )
    return found


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` of ``output_dir``; newer incomplete ones are skipped
    with a warning naming them."""
    for folder in reversed(checkpoint_dirs(output_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        logger.warning("not resuming from %s: it %s; trying an older checkpoint", folder, problem)
    return None


def staging_root(target: Path, pid: int) -> Path:
    """The temporary sibling a save of ``target`` is written into (``.<name>.tmp-<pid>``).

    Args:
        target: the folder being saved (``DIR/checkpoint-N``, or ``DIR/model`` for the final output).
        pid: the main process's id (the same on every rank).
    """
    return target.with_name(f".{target.name}{TEMPORARY_INFIX}{pid}")


def remove_directory(path: Path) -> None:
    """Delete a folder without ever leaving it half-deleted under its own name (rename aside, then
    delete; a kill in between leaves an ignored ``.old-`` temporary)."""
    aside = temporary_sibling(path, REPLACED_INFIX)
    os.replace(path, aside)
    kill_point("checkpoint-rotating", checkpoint_step(path))
    shutil.rmtree(aside)


def rotate_checkpoints(output_dir: Path, keep: int) -> list[Path]:
    """Remove the oldest ``checkpoint-N`` folders so that at most ``keep`` remain (the newest is
    always kept; ``keep`` <= 0 keeps all).

    Returns:
        The removed folders.
    """
    folders = checkpoint_dirs(output_dir)
    if keep <= 0 or len(folders) <= keep:
        return []
    removed = folders[: len(folders) - max(keep, 1)]
    for folder in removed:
        remove_directory(folder)
        logger.info("removed %s (save_total_limit %d)", folder, keep)
    return removed


def commit_final_output(staged: Path, output_dir: Path) -> None:
    """Move the completely written final files from ``staged`` into ``output_dir`` (the protocol of
    the module docstring: old ``config.json`` out first, new ``config.json`` in last).

    Raises:
        FileNotFoundError: ``staged`` holds no ``config.json`` (nothing to commit).
    """
    if not (staged / COMMIT_FILE).is_file():
        raise FileNotFoundError(f"{staged} holds no {COMMIT_FILE}: refusing to commit an incomplete output")
    (output_dir / COMMIT_FILE).unlink(missing_ok=True)
    entries = sorted(p for p in staged.iterdir() if p.name != COMMIT_FILE)
    for position, entry in enumerate(entries):
        if entry.is_dir():
            replace_directory(entry, output_dir / entry.name)
        else:
            os.replace(entry, output_dir / entry.name)
        if position == len(entries) // 2:
            kill_point("final-committing")
    os.replace(staged / COMMIT_FILE, output_dir / COMMIT_FILE)
    staged.rmdir()


def finished_step(checkpoint: Path) -> int | None:
    """The step of a checkpoint written at the end of its run (``global_step >= max_steps`` in its
    ``trainer_state.json``), ``None`` for a checkpoint written mid-run."""
    state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    step, last = int(state.get("global_step", 0)), int(state.get("max_steps", 0) or 0)
    return step if last and step >= last else None


def copy_final_files(checkpoint: Path, staged: Path) -> list[str]:
    """Copy the final-output files of ``checkpoint`` (:data:`FINAL_FILES_IN_CHECKPOINT`) into ``staged``.

    Returns:
        The copied file names.
    """
    staged.mkdir(parents=True, exist_ok=True)
    names = sorted({p.name for pattern in FINAL_FILES_IN_CHECKPOINT for p in checkpoint.glob(pattern) if p.is_file()})
    for name in names:
        shutil.copy2(checkpoint / name, staged / name)
    return names
