"""The VLMEvalKit runner: VLMEvalKit's own ``run.py``, with our models registered.

This module is the program behind the repository's ``run.py`` (a shim) and the console script
``tg-llava-vlmeval`` (what a wheel install has); ``python -m tg_llava_eval.model_wrappers.vlmevalkit_run``
works too. Docs: docs/vlmevalkit.md.

Usage (every VLMEvalKit flag works as in VLMEvalKit; ``--model-path``, ``--variant``,
``--batch-size`` and ``--vlmevalkit-run`` are ours; ``tg-llava-vlmeval`` or
``python -m tg_llava_eval.model_wrappers.vlmevalkit_run`` in place of ``python run.py``)::

    python run.py --model TG-LLaVA-Qwen2-7B --model-path ckpts/tg-qwen2 --data MMBench_DEV_EN MME
    python run.py --model tg_llava --model-path DIR --variant tg-llava-qwen2-7b --data POPE --judge exact_matching
    python run.py --config my_eval.json --model-path DIR            # presets named in the JSON get DIR
    torchrun --nproc-per-node 8 run.py --model TG-LLaVA-Vicuna-13B --model-path DIR --data MME

VLMEvalKit's runner comes in two layouts (:mod:`.vlmevalkit_install`): PyPI's ms-vlmeval has the
module ``vlmeval.run``; a git checkout (distribution ``vlmeval``) has the repository's ``run.py``
beside its ``vlmeval/`` package. Either is found (or named with ``--vlmevalkit-run`` /
``$TG_LLAVA_VLMEVALKIT_RUN``) before anything heavy is imported, and its ``main()`` is called the
same way. What this script adds around that ``main()`` (VLMEvalKit itself is not modified):

1. ``--model-path DIR``, ``--variant NAME`` and ``--batch-size N`` are ours: they are removed from
   the argument list and bound to our presets (``tg_llava_eval.model_wrappers.vlmevalkit.PRESETS``) in
   ``vlmeval.config.supported_VLM``, which :func:`register` fills in place. A preset with no
   checkpoint, or a checkpoint that is not the preset's variant, is refused here with exit status
   2 — VLMEvalKit would only log it per dataset and exit 0.
2. VLMEvalKit's own generation flags ``--max-tokens``, ``--temperature`` and ``--top-p`` (documented
   by VLMEvalKit for API models) are honoured by our presets when given; they stay in the
   argument list. Without them the presets decode like VLMEvalKit's LLaVA-1.5 wrapper.
3. A run manifest ``<work-dir>/<model>/tg_llava_run.json`` (schema ``tg_llava_run/1``: variant, LLM,
   checkpoint, the VLMEvalKit distribution, version and checkout commit, our version) is written
   for each of our models before the run.
4. After the run, the number of failed rows of each prediction file is logged (a failed row's
   prediction starts with ``Failed to obtain answer: [TG-LLaVA]``).
5. ``torchrun`` data parallelism: on GPUs VLMEvalKit does everything (one GPU per rank through
   ``CUDA_VISIBLE_DEVICES``, an NCCL group, rank 0 merges and evaluates). VLMEvalKit hard-codes the
   NCCL backend, which cannot start without GPUs; on a machine without CUDA devices this script
   therefore starts a ``gloo`` process group itself and imports VLMEvalKit's runner with
   ``WORLD_SIZE=1`` in the environment (the runner reads it once, at import), so the runner does
   not start NCCL while VLMEvalKit's inference still shards rows by ``RANK``/``WORLD_SIZE`` and
   synchronises over the gloo group. The environment is restored right after that import. (The
   status.json of such a run records ``world_size`` 1.) All ranks take rank 0's run id
   (:func:`agree_on_run_id`), so a checkout's runner writes every shard into one ``T<time>/``
   run folder.

Exit status: VLMEvalKit's (0 even when a dataset failed: read the log or ``status.json``), or 2
for a bad use of our flags or no VLMEvalKit to run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tg_llava_eval.errors import TGLlavaError, TGLlavaUsageError
from tg_llava_eval.model_wrappers.vlmevalkit_install import RUNNER_ENV, VLMEvalKitInstall, import_runner, locate_vlmevalkit

logger = logging.getLogger(__name__)

#: VLMEvalKit's default ``--work-dir`` (``vlmeval/run.py``); ``$MMEVAL_ROOT`` overrides it there too.
DEFAULT_WORK_DIR = "./outputs"
#: The message VLMEvalKit logs at import when no optional ``.env`` (API keys) sits next to it.
_TOOLKIT_ENV_NOTICE = "Did not detect the .env file"


def build_parser(presets: Sequence = ()) -> argparse.ArgumentParser:
    """Parser of the flags this script owns (everything else belongs to VLMEvalKit).

    Args:
        presets: ``Preset`` records listed in the help text.
    """
    epilog = "TG-LLaVA models for --model:\n" + "\n".join(f"  {p.name:34} {p.description}" for p in presets)
    parser = argparse.ArgumentParser(
        add_help=False, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="TG-LLaVA's flags; every other flag is VLMEvalKit's (its help follows).",
        epilog=epilog if presets else None,
    )
    parser.add_argument("--model-path", default=None,
                        help="TG-LLaVA checkpoint directory for our presets (tg_llava, TG-LLaVA-Qwen2-7B, ...)")
    parser.add_argument("--variant", default=None,
                        help="variant of that checkpoint for the generic tg_llava preset (default: recognised from its config)")
    parser.add_argument("--vlmevalkit-run", default=None, metavar="PATH",
                        help=f"a VLMEvalKit git checkout's run.py (or the checkout folder) to run; default ${RUNNER_ENV}, "
                             "else vlmeval/run.py (PyPI's ms-vlmeval), else the run.py beside the installed vlmeval package")
    from tg_llava_eval.model_wrappers.vlmevalkit_batching import DEFAULT_BATCH_SIZE

    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"rows per model call for our presets (default {DEFAULT_BATCH_SIZE}); 1 = one call per row")
    return parser


def _toolkit_flags_parser() -> argparse.ArgumentParser:
    """VLMEvalKit flags this script reads (and leaves in place): models, data, work dir, generation."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--model", nargs="+", default=None)
    parser.add_argument("--data", nargs="+", default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def split_argv(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Separate our flags from VLMEvalKit's.

    Args:
        argv: The command line without the program name.

    Returns:
        ``(ours, rest)``: our parsed flags and the untouched remainder for VLMEvalKit.
    """
    ours, rest = build_parser().parse_known_args(list(argv))
    return ours, rest


def generation_overrides(toolkit: argparse.Namespace) -> dict:
    """Our preset keywords for VLMEvalKit's ``--max-tokens``/``--temperature``/``--top-p``, when given."""
    overrides = {}
    if toolkit.max_tokens is not None:
        overrides["max_new_tokens"] = toolkit.max_tokens
    if toolkit.temperature is not None:
        overrides["temperature"] = toolkit.temperature
        overrides["do_sample"] = toolkit.temperature > 0
    if toolkit.top_p is not None:
        overrides["top_p"] = toolkit.top_p
    return overrides


class _DemoteToolkitEnvNotice(logging.Filter):
    """Show VLMEvalKit's import-time "no .env file" ERROR as INFO: the file only holds API keys."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and _TOOLKIT_ENV_NOTICE in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(verbose: bool) -> None:
    """A root handler for our and third-party records; ours at INFO (DEBUG with ``--verbose``).

    Installed before VLMEvalKit is imported so that its ``logging.basicConfig`` becomes a no-op.
    VLMEvalKit's own logger keeps its own console handler (it does not propagate).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s - %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_DemoteToolkitEnvNotice())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("tg_llava_eval").setLevel(logging.DEBUG if verbose else logging.INFO)


def import_toolkit_runner(install: VLMEvalKitInstall):
    """Import VLMEvalKit's runner of either layout (see the module docstring, point 5, for torchrun
    without GPUs).

    Returns:
        ``(runner module, owns_process_group)``.
    """
    import torch

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    # device_count() asks NVML and does not initialise CUDA, so VLMEvalKit can still narrow
    # CUDA_VISIBLE_DEVICES per rank when it is imported below.
    if world_size <= 1 or torch.cuda.device_count() > 0:
        return import_runner(install), False
    import torch.distributed as dist

    os.environ["WORLD_SIZE"] = "1"
    try:
        runner = import_runner(install)
    finally:
        os.environ["WORLD_SIZE"] = str(world_size)
    timeout = datetime.timedelta(seconds=int(os.environ.get("DIST_TIMEOUT", 3600)))
    dist.init_process_group(backend="gloo", timeout=timeout)
    logger.info("no CUDA device: rank %d of %d synchronises over a gloo process group", dist.get_rank(), world_size)
    return runner, True


def agree_on_run_id(runner) -> str:
    """Give every rank rank 0's run id (VLMEvalKit's ``build_eval_id()``, ``T<date>-<time>``).

    The checkout's runner names its output folder ``<work-dir>/<model>/<run id>/`` after the
    second it starts; with a process group of its own it broadcasts rank 0's id, but under our
    gloo group (CPU torchrun) it sees ``WORLD_SIZE=1`` and each rank would take its own clock, so
    ranks that start in different seconds write to different folders and rank 0 finds no shards.
    Here rank 0's id is broadcast over our group and bound as the runner's ``build_eval_id`` (the
    one name of VLMEvalKit's we rebind, in our process only, and only when we own the group).
    PyPI's runner writes no run folder; it gets the same id for its ``status.json``.
    """
    import torch.distributed as dist

    holder = [runner.build_eval_id() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(holder, src=0)
    run_id = holder[0]
    runner.build_eval_id = lambda: run_id
    return run_id


def check_our_flags(ours: argparse.Namespace, toolkit: argparse.Namespace) -> dict | None:
    """Our flags' paths and values (and ``--config``'s JSON), before VLMEvalKit or torch is imported.

    Returns:
        The ``--config`` JSON (read here once; the run's other steps take it from here), or ``None``.

    Raises:
        TGLlavaUsageError: naming the flag and the value.
    """
    from tg_llava_eval.cli.validation import require_checkpoint, require_file, require_variant
    from tg_llava_eval.model_wrappers.vlmevalkit_batching import check_batch_size

    if ours.model_path is not None:
        require_checkpoint(ours.model_path, "--model-path")
    if ours.variant is not None:
        require_variant(ours.variant)
    if ours.batch_size is not None:
        check_batch_size(ours.batch_size, where="--batch-size")
    if toolkit.config is None:
        return None
    try:
        config = json.loads(require_file(toolkit.config, "--config").read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TGLlavaUsageError(f"--config {toolkit.config!r}: not a JSON file ({error})") from None
    if not isinstance(config, dict):
        raise TGLlavaUsageError(f"--config {toolkit.config!r}: not a JSON object with \"model\" and \"data\" entries")
    return config


def _our_model_entries(config: dict | None, toolkit: argparse.Namespace, ours: argparse.Namespace,
                       wrapper) -> dict[str, tuple[str | None, str | None]]:
    """Models of this run that are ours: name -> (checkpoint, variant request).

    ``config`` is the ``--config`` JSON (:func:`check_our_flags`), or ``None`` for ``--model``.

    Raises:
        TGLlavaConfigError: one of them has no checkpoint.
    """
    from tg_llava_eval.errors import TGLlavaConfigError

    entries: dict[str, tuple[str | None, str | None]] = {}
    if config is not None:
        for name, entry in config.get("model", {}).items():
            if "class" in entry and entry["class"] != wrapper.CLASS_NAME:
                continue
            if "class" not in entry and name not in wrapper.PRESETS_BY_NAME:
                continue
            preset = wrapper.PRESETS_BY_NAME.get(name) if "class" not in entry else None
            path = entry.get("model_path", ours.model_path if preset is not None else None)
            variant = entry.get("variant", (preset.variant or ours.variant) if preset is not None else None)
            entries[name] = (path, variant)
    else:
        for name in toolkit.model or ():
            preset = wrapper.PRESETS_BY_NAME.get(name)
            if preset is not None:
                entries[name] = (ours.model_path, preset.variant or ours.variant)
    for name, (path, _) in entries.items():
        if path is None:
            raise TGLlavaConfigError(
                f"{name} needs a checkpoint: TG-LLaVA presets ship no weights; pass --model-path DIR"
                + (f" or \"model_path\" in its --config entry ({toolkit.config})" if toolkit.config else "")
            )
    return entries


def check_config_datasets(config: dict | None, toolkit: argparse.Namespace) -> None:
    """Every ``--config`` dataset names a class VLMEvalKit has (VLMEvalKit would fail that dataset
    after loading the model, log it and exit 0).

    Raises:
        TGLlavaUsageError: naming the dataset, the class and the closest class names.
    """
    if config is None:
        return
    import difflib

    import vlmeval.dataset

    for name, entry in config.get("data", {}).items():
        cls = entry.get("class") if isinstance(entry, dict) else None
        if cls is not None and not isinstance(getattr(vlmeval.dataset, str(cls), None), type):
            known = [n for n in dir(vlmeval.dataset) if isinstance(getattr(vlmeval.dataset, n), type)]
            close = ", ".join(difflib.get_close_matches(str(cls), known, n=3))
            hint = f" (did you mean {close}?)" if close else ""
            raise TGLlavaUsageError(f"--config {toolkit.config}: dataset {name!r} has class {cls!r}, which VLMEvalKit "
                                    f"does not have{hint}")


def _dataset_names(config: dict | None, toolkit: argparse.Namespace) -> list[str]:
    """The datasets of this run (``--config`` data keys, or ``--data`` values)."""
    return list(config.get("data", {})) if config is not None else list(toolkit.data or ())


def log_failed_rows(work_dir: Path, model_names: Sequence[str], datasets: Sequence[str], wrapper) -> dict[str, tuple[int, int]]:
    """Log, per prediction file of our models, how many rows failed.

    Returns:
        ``{prediction file: (failed, total)}`` for the files found.
    """
    from vlmeval.smp import get_pred_file_path, load

    counts = {}
    for model in model_names:
        for dataset in datasets:
            path = get_pred_file_path(str(work_dir / model), model, dataset, use_env_format=True)
            if not os.path.exists(path):
                logger.warning("%s x %s: no prediction file (%s); see VLMEvalKit's log above", model, dataset, path)
                continue
            predictions = load(path)["prediction"]
            failed = sum(wrapper.is_failure(p) for p in predictions)
            counts[path] = (failed, len(predictions))
            log = logger.warning if failed else logger.info
            log("%s x %s: %d of %d rows failed%s", model, dataset, failed, len(predictions),
                f" (their prediction column says why: {path})" if failed else "")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Run VLMEvalKit with our models registered; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, rest = split_argv(argv)
    toolkit, _ = _toolkit_flags_parser().parse_known_args(rest)
    configure_logging(toolkit.verbose)

    try:
        config = check_our_flags(ours, toolkit)
        install = locate_vlmevalkit(ours.vlmevalkit_run)
    except TGLlavaError as err:
        logger.error("%s", err)
        return 2
    logger.info("VLMEvalKit: %s", install.describe())
    try:
        runner, owns_process_group = import_toolkit_runner(install)
    except ModuleNotFoundError as err:
        logger.error("VLMEvalKit (%s) cannot be imported: %s. Install what it needs (a git checkout's "
                     "requirements miss some: docs/install.md, \"VLMEvalKit from git\")", install.describe(), err)
        return 2
    if owns_process_group:
        agree_on_run_id(runner)
    from tg_llava_eval.model_wrappers import vlmevalkit as wrapper

    wrapper.register()
    if toolkit.help:
        build_parser(wrapper.PRESETS).print_help()  # ours first; VLMEvalKit prints its own help and exits below
    work_dir = Path(os.environ.get("MMEVAL_ROOT") or toolkit.work_dir)
    try:
        entries = {} if toolkit.help else _our_model_entries(config, toolkit, ours, wrapper)
        check_config_datasets(config, toolkit)
        wrapper.check_variant_request(list(entries), ours.variant)
        wrapper.generation_from_keywords(generation_overrides(toolkit))  # bad decoding flags fail here
        batch_sizes = wrapper.run_batch_sizes(list(entries), toolkit.config, ours.batch_size)
        manifests = {name: wrapper.checkpoint_manifest(name, path, variant, batch_size=batch_sizes[name], toolkit=install)
                     for name, (path, variant) in entries.items()}
    except (TGLlavaError, KeyError, OSError, json.JSONDecodeError) as err:
        logger.error("%s", err)
        return 2
    wrapper.bind_presets(model_path=ours.model_path, variant=ours.variant, generation=generation_overrides(toolkit),
                         batch_size=ours.batch_size)
    if int(os.environ.get("RANK", "0")) == 0:
        from tg_llava_eval.results.manifest import write_run_manifest

        for name, manifest in manifests.items():
            write_run_manifest(work_dir / name, manifest)

    sys.argv = [sys.argv[0]] + rest  # VLMEvalKit's parse_args() reads sys.argv
    try:
        runner.load_env()  # what both layouts' `python run.py` does first: API keys from VLMEvalKit's .env
        runner.main()
    finally:
        if owns_process_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0 and entries:
        log_failed_rows(work_dir, list(entries), _dataset_names(config, toolkit), wrapper)
    return 0


if __name__ == "__main__":
    sys.exit(main())
