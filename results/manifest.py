"""The run manifest ``tg_llava_run.json``: who produced the outputs in a folder.

Toolkit output files do not say which project variant or checkpoint produced them (VLMEvalKit
names a folder after the ``--model`` preset; lmms-eval after the ``pretrained=`` path). Our
evaluation wrappers (``model_wrappers.vlmevalkit`` / ``run.py`` and ``model_wrappers.lmms_eval``)
therefore write a small JSON file next to the outputs, and the parsers of this package read it.
Schema ``tg_llava_run/1``::

    {
      "schema": "tg_llava_run/1",             # required
      "variant": "tg-llava-qwen2-7b",         # required key; null for a custom checkpoint
      "toolkit": "vlmevalkit",                # "vlmevalkit" | "lmms-eval"
      "toolkit_version": "0.0.20",            # the toolkit distribution's version
      "toolkit_distribution": "ms-vlmeval",   # optional: which distribution ("ms-vlmeval", "vlmeval", "lmms_eval")
      "toolkit_commit": "e8e78f05f308...",    # optional: the git commit of a toolkit checkout
      "model_name": "TG-LLaVA-Qwen2-7B",      # the toolkit-side model name
      "llm": "Qwen2-7B-Instruct",             # LLM display name or model_type; may be null
      "checkpoint": "/abs/path/ckpts/tg-qwen2",
      "tg_llava_eval_version": "0.1.0",
      "created": "2026-01-12T18:00:00+00:00", # ISO-8601
      "method": "TG-LLaVA",                   # optional (custom variants only)
      "switches": {"text_guided_mask": true, "detail_perceiver": true},  # optional (ablations)
      "batch_size": 8,                        # optional: rows per model call of the run
      "extra": {}                             # optional, free-form
    }

All keys but ``schema`` and ``variant`` are optional for the reader. A key the schema does not
know is kept under ``extra`` with a warning (a newer writer must not break an older reader), a
known key with a wrong type is an error. For a variant of the variant table, the table's method
and LLM win over the manifest's ``llm`` (the lmms-eval wrapper writes the ``model_type`` there);
for other variants the manifest's ``method``/``llm``/``switches`` describe the model.

Where it is looked for: VLMEvalKit — the run folder (``T…/``) first, then the model folder
(``work_dir/<model>/``); lmms-eval — the folder of the ``*_results.json`` (``output_path/<model>/``).
The nearest one applies to every score file below it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tg_llava_eval.atomic_io import write_text_atomic
from tg_llava_eval.results.errors import ResultFileError

logger = logging.getLogger(__name__)

#: File name of the manifest.
MANIFEST_NAME = "tg_llava_run.json"
#: The schema id this module reads and writes.
SCHEMA = "tg_llava_run/1"
#: Names of the two ablation switches (the model config's ``use_text_guided_mask`` and
#: ``use_detail_perceiver``); a manifest's ``switches`` may only use these keys.
SWITCH_NAMES = ("text_guided_mask", "detail_perceiver")


@dataclass(frozen=True)
class RunManifest:
    """Parsed ``tg_llava_run.json`` (see the module docstring for the JSON schema).

    Attributes:
        variant: Project variant id, ``""`` when the writer had none (JSON ``null``).
        toolkit, toolkit_version, toolkit_distribution, toolkit_commit, model_name, llm, checkpoint,
        tg_llava_eval_version, created: Run facts as written (``""`` when absent or null).
        method: Optional method label for variants outside the variant table.
        switches: Optional ablation switches ``{name: bool}`` (names from :data:`SWITCH_NAMES`).
        batch_size: Optional rows per model call of the run (answers do not depend on it).
        extra: Free-form mapping, plus any key the schema does not know.
        schema: Always :data:`SCHEMA`.
    """

    variant: str
    toolkit: str = ""
    toolkit_version: str = ""
    toolkit_distribution: str = ""
    toolkit_commit: str = ""
    model_name: str = ""
    llm: str = ""
    checkpoint: str = ""
    tg_llava_eval_version: str = ""
    created: str = ""
    method: str = ""
    switches: Mapping[str, bool] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    batch_size: int | None = None

    def toolkit_release(self) -> str:
        """The toolkit release as records name it: ``ms-vlmeval 0.0.20``, ``vlmeval 0.1.0 (git e8e78f05)``;
        the bare version for a manifest that names no distribution (written before the field existed)."""
        release = f"{self.toolkit_distribution} {self.toolkit_version}".strip() if self.toolkit_distribution else self.toolkit_version
        return f"{release} (git {self.toolkit_commit[:8]})" if self.toolkit_commit else release

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``variant: null`` when empty; other empty optional fields left out)."""
        data = asdict(self)
        data = {k: v for k, v in data.items() if v not in ("", {}, None) or k in ("schema", "variant")}
        data["variant"] = self.variant or None
        return data


_STRING_FIELDS = (
    "toolkit", "toolkit_version", "toolkit_distribution", "toolkit_commit", "model_name", "llm", "checkpoint",
    "tg_llava_eval_version", "created", "method",
)
_KNOWN_FIELDS = set(_STRING_FIELDS) | {"schema", "variant", "switches", "extra", "batch_size"}


def parse_run_manifest(data: Any, source: str | Path) -> RunManifest:
    """Validate a decoded manifest.

    Args:
        data: The decoded JSON value.
        source: File name for error messages.

    Returns:
        The manifest.

    Raises:
        ResultFileError: Not an object, another schema, no ``variant`` key, or a known field of
            the wrong type.
    """
    if not isinstance(data, dict):
        raise ResultFileError(source, f"a run manifest must be a JSON object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA:
        raise ResultFileError(source, f"'schema' must be {SCHEMA!r}, got {data.get('schema')!r}")
    if "variant" not in data:
        raise ResultFileError(source, "the manifest has no 'variant' key (use null for a custom checkpoint)")
    for name in ("variant", *_STRING_FIELDS):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ResultFileError(source, f"manifest field {name!r} must be a string or null, got {data[name]!r}")
    switches = data.get("switches") or {}
    if not isinstance(switches, dict) or any(k not in SWITCH_NAMES or not isinstance(v, bool) for k, v in switches.items()):
        raise ResultFileError(source, f"'switches' must map {list(SWITCH_NAMES)} to true/false, got {switches!r}")
    batch_size = data.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ResultFileError(source, f"'batch_size' must be a positive integer or null, got {batch_size!r}")
    extra = data.get("extra") or {}
    if not isinstance(extra, dict):
        raise ResultFileError(source, f"'extra' must be a JSON object, got {extra!r}")
    unknown = sorted(set(data) - _KNOWN_FIELDS)
    if unknown:
        logger.warning("%s: manifest key(s) %s are not in schema %s; kept under 'extra'", source, unknown, SCHEMA)
        extra = {**extra, **{k: data[k] for k in unknown}}
    return RunManifest(
        variant=data.get("variant") or "",
        **{name: data.get(name) or "" for name in _STRING_FIELDS},
        switches=dict(switches),
        extra=dict(extra),
        batch_size=batch_size,
    )


def build_run_manifest(
    *,
    toolkit: str,
    toolkit_version: str,
    model_name: str,
    variant: str | None,
    llm: str | None,
    checkpoint: str,
    switches: Mapping[str, bool] | None = None,
    batch_size: int | None = None,
    toolkit_distribution: str | None = None,
    toolkit_commit: str | None = None,
) -> RunManifest:
    """The manifest an evaluation wrapper writes for one model's outputs (both toolkits, ``run.py``).

    Args:
        toolkit: ``vlmevalkit`` or ``lmms-eval``.
        toolkit_version: The toolkit distribution's version.
        model_name: The toolkit-side model name (VLMEvalKit preset/folder, lmms-eval model id).
        variant: Variant name, or ``None`` for a custom checkpoint.
        llm: The variant's LLM (``Variant.llm``), or the checkpoint's ``text_config.model_type``.
        checkpoint: The checkpoint evaluated (an absolute path, or a hub id).
        switches: The checkpoint's TG switches (:data:`SWITCH_NAMES`), where the writer knows them.
        batch_size: Rows per model call, where the writer batches (the VLMEvalKit runner).
        toolkit_distribution: The distribution that provides the toolkit (VLMEvalKit comes as
            ``ms-vlmeval`` from PyPI or as ``vlmeval`` from a git checkout).
        toolkit_commit: The toolkit checkout's git commit, when it is one.

    Returns:
        The manifest, stamped with this package's version and the time (UTC, seconds).

    Raises:
        ResultFileError: a field that does not follow the schema.
    """
    import datetime

    import tg_llava_eval

    manifest = RunManifest(
        variant=variant or "",
        toolkit=toolkit,
        toolkit_version=toolkit_version,
        toolkit_distribution=toolkit_distribution or "",
        toolkit_commit=toolkit_commit or "",
        model_name=model_name,
        llm=llm or "",
        checkpoint=checkpoint,
        tg_llava_eval_version=tg_llava_eval.__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        switches=dict(switches or {}),
        batch_size=batch_size,
    )
    parse_run_manifest(manifest.to_dict(), MANIFEST_NAME)  # the reader's rules
    return manifest


def read_run_manifest(path: str | Path) -> RunManifest:
    """Read and validate ``tg_llava_run.json``.

    Raises:
        ResultFileError: Unreadable file, invalid JSON or an invalid manifest.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"cannot read run manifest: {error}") from None
    except json.JSONDecodeError as error:
        raise ResultFileError(path, f"invalid JSON in run manifest: {error}") from None
    return parse_run_manifest(data, path)


def write_run_manifest(directory: str | Path, manifest: RunManifest) -> Path:
    """Write ``manifest`` as ``<directory>/tg_llava_run.json``.

    The one writer: ``run.py`` and both evaluation wrappers write through it (with a manifest from
    :func:`build_run_manifest`).

    Args:
        directory: The output folder the manifest describes (created if missing).
        manifest: The manifest; it is validated before writing.

    Returns:
        The written path.

    Raises:
        ResultFileError: The manifest does not validate.
    """
    path = Path(directory) / MANIFEST_NAME
    parse_run_manifest(manifest.to_dict(), path)  # same rules as reading
    write_text_atomic(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    logger.debug("wrote run manifest %s", path)
    return path


def find_run_manifest(folder: Path, stop: Path | None = None) -> Path | None:
    """The nearest ``tg_llava_run.json`` in ``folder`` or its parents, up to ``stop`` (inclusive).

    Args:
        folder: Where the score file lives.
        stop: The highest folder to look in (the collected root); ``None`` = ``folder`` only.

    Returns:
        The manifest path, or ``None``.
    """
    current = folder
    while True:
        candidate = current / MANIFEST_NAME
        if candidate.is_file():
            return candidate
        if stop is None or current == stop or current.parent == current:
            return None
        current = current.parent
