"""Stage-1 adapter export and strict loading: safetensors per group + a checked manifest.

Stage 1 trains three module groups (``projector``, ``text_guided_mask``, ``detail_perceiver``);
stage 2 must start from exactly those weights. The official code saved them as three
``torch.save`` pickles selected by parameter-name substrings and loaded them with splits on names;
a missing ``--pretrain_mm_cross_attn`` was silently ignored, leaving TG-FOM a zero no-op
(reference ``tg_llava_architecture.md`` §4.3). Here:

* :func:`save_stage1_adapters` writes ``<group>.safetensors`` per group present in the model (the
  group module's ``state_dict``, keys relative to the module) and ``stage1_adapters.json``: the
  format version, the model variant, and per group the file, its SHA-256, the tensor names,
  shapes and dtypes and the parameter count;
* :func:`load_stage1_adapters` requires every stage-1 group the model has (a missing one is an
  error naming it), rejects a group the model lacks, checks each file's digest and its tensor
  names/shapes against the module, then loads with ``strict=True``.

Both work under DeepSpeed ZeRO-3, where parameters are partitioned across ranks: the group's
parameters are gathered (``deepspeed.zero.GatheredParameters``; a collective call, so every rank
must call these functions), rank 0 writes, and a load on rank 0 is broadcast to all ranks. Without
partitioned parameters DeepSpeed is not imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import pathlib
from collections.abc import Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tg_llava_eval.errors import TGLlavaCheckpointError
from tg_llava_eval.training.outputs import MANIFEST_NAME
from tg_llava_eval.training.recipe import STAGE1_ADAPTER_GROUPS

logger = logging.getLogger(__name__)

#: Value of the manifest's ``format`` field and its version.
MANIFEST_FORMAT = "tg-llava-stage1-adapters"
MANIFEST_VERSION = 1
#: Bytes read at a time when hashing.
_HASH_CHUNK = 1 << 20


def _is_partitioned(module: nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 partitioned this module's parameters (they carry ``ds_id``)."""
    return any(hasattr(parameter, "ds_id") for parameter in module.parameters())


@contextlib.contextmanager
def gathered(module: nn.Module, *, modifier_rank: int | None = None) -> Iterator[None]:
    """Make the module's full parameters visible (ZeRO-3); a no-op for ordinary modules.

    Args:
        module: any module.
        modifier_rank: rank whose in-place changes are broadcast on exit (``0`` for loads),
            ``None`` for read-only access.
    """
    if not _is_partitioned(module):
        yield
        return
    import deepspeed  # only reached under ZeRO-3, i.e. when DeepSpeed is in use

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=modifier_rank):
        yield


def file_sha256(path: pathlib.Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_groups(model: nn.Module) -> dict[str, nn.Module]:
    """The stage-1 groups this model has (absent TG modules omitted), in recipe order."""
    available = model.trainable_groups()
    return {name: available[name] for name in STAGE1_ADAPTER_GROUPS if name in available}


def save_stage1_adapters(model: nn.Module, output_dir: str | pathlib.Path, *, is_main_process: bool = True) -> pathlib.Path | None:
    """Write the stage-1 groups of ``model`` and their manifest.

    Args:
        model: the trained ``TGLlavaForConditionalGeneration`` (the bare module, not the engine).
        output_dir: target folder (created).
        is_main_process: only the main process writes; every rank must call (ZeRO-3 gathers).

    Returns:
        The manifest path on the main process, ``None`` elsewhere.
    """
    output_dir = pathlib.Path(output_dir)
    groups: dict[str, dict] = {}
    for name, module in adapter_groups(model).items():
        with gathered(module):
            tensors = {key: value.detach().to("cpu").clone().contiguous() for key, value in module.state_dict().items()}
        if not is_main_process:
            continue
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={"format": "pt", "group": name})
        groups[name] = {
            "file": path.name,
            "sha256": file_sha256(path),
            "num_parameters": int(sum(t.numel() for t in tensors.values())),
            "tensors": {key: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for key, t in tensors.items()},
        }
    if not is_main_process:
        return None
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "variant": getattr(model.config, "variant", None),
        "groups": groups,
    }
    path = output_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info("stage-1 adapters %s written to %s", sorted(groups), output_dir)
    return path


def read_manifest(stage1_dir: str | pathlib.Path) -> dict:
    """Read and check the manifest's header.

    Raises:
        TGLlavaCheckpointError: missing file, invalid JSON, other format or version.
    """
    path = pathlib.Path(stage1_dir) / MANIFEST_NAME
    if not path.is_file():
        raise TGLlavaCheckpointError(
            f"{pathlib.Path(stage1_dir)} has no {MANIFEST_NAME}: not a stage-1 output (run `tg-llava-eval train pretrain`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TGLlavaCheckpointError(f"{path} is not valid JSON: {error}") from error
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("format_version") != MANIFEST_VERSION:
        raise TGLlavaCheckpointError(
            f"{path}: expected format {MANIFEST_FORMAT!r} version {MANIFEST_VERSION}, got "
            f"{manifest.get('format')!r} version {manifest.get('format_version')!r}"
        )
    if not isinstance(manifest.get("groups"), dict):
        raise TGLlavaCheckpointError(f"{path}: 'groups' must be an object")
    return manifest


def _check_group_file(stage1_dir: pathlib.Path, name: str, entry: dict, module: nn.Module) -> dict[str, torch.Tensor]:
    """Digest, names and shapes of one group file against the manifest and the module."""
    path = stage1_dir / entry.get("file", "")
    if not path.is_file():
        raise TGLlavaCheckpointError(f"stage-1 group {name!r}: file {path} listed in {MANIFEST_NAME} is missing")
    digest = file_sha256(path)
    if digest != entry.get("sha256"):
        raise TGLlavaCheckpointError(
            f"stage-1 group {name!r}: {path} has SHA-256 {digest}, the manifest says {entry.get('sha256')} "
            "(file changed after export?)"
        )
    tensors = load_file(str(path))
    with gathered(module):
        expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(key for key in set(found) & set(expected) if found[key] != expected[key])
    if missing or unexpected or wrong:
        details = "; ".join(f"{key}: file {found[key]} vs model {expected[key]}" for key in wrong[:5])
        raise TGLlavaCheckpointError(
            f"stage-1 group {name!r} from {path} does not fit the model: missing keys {missing[:10]}, "
            f"unexpected keys {unexpected[:10]}, shape mismatches [{details}]"
        )
    return tensors


def load_stage1_adapters(
    model: nn.Module,
    stage1_dir: str | pathlib.Path,
    *,
    groups: Sequence[str] | None = None,
) -> list[str]:
    """Strictly load stage-1 groups into ``model`` (every rank must call under ZeRO-3).

    Args:
        model: the model starting stage 2.
        stage1_dir: a stage-1 output (or ``checkpoint-*``) folder with the manifest.
        groups: groups to load; default every stage-1 group the model has.

    Returns:
        The loaded group names.

    Raises:
        TGLlavaCheckpointError: a required group missing from the manifest (named), a manifest
            group the model does not have (e.g. TG-FOM weights for a no-FOM ablation), a missing
            or modified file, or tensor names/shapes that differ from the module.
    """
    stage1_dir = pathlib.Path(stage1_dir)
    manifest = read_manifest(stage1_dir)
    modules = adapter_groups(model)
    required = list(modules) if groups is None else list(groups)
    for name in required:
        if name not in modules:
            raise TGLlavaCheckpointError(f"the model has no group {name!r} to load stage-1 weights into")
        if name not in manifest["groups"]:
            raise TGLlavaCheckpointError(
                f"stage-1 group {name!r} is missing from {stage1_dir / MANIFEST_NAME} (it lists "
                f"{sorted(manifest['groups'])}); the model has it, so stage 2 would start it untrained"
            )
    extra = sorted(set(manifest["groups"]) - set(modules))
    if extra:
        raise TGLlavaCheckpointError(
            f"{stage1_dir / MANIFEST_NAME} has groups {extra} that this model does not have "
            f"(variant {getattr(model.config, 'variant', None)!r} vs stage 1 {manifest.get('variant')!r})"
        )
    for name in required:
        module = modules[name]
        tensors = _check_group_file(stage1_dir, name, manifest["groups"][name], module)
        with gathered(module, modifier_rank=0):
            module.load_state_dict(tensors, strict=True)
        logger.info("loaded stage-1 group %r (%d tensors) from %s", name, len(tensors), stage1_dir)
    return required
