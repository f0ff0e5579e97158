"""The run manifest ``tg_llava_run.json``: who produced the outputs in a folder.

Toolkit output files do not say which project variant or checkpoint produced them (VLMEvalKit
names a folder after the ``--model`` preset; lmms-eval after the ``pretrained=`` path). Our
evaluation wrappers therefore write a small JSON file next to the outputs, and the parsers of this
package read it. Schema (version 1)::

    {
      "schema_version": 1,                    # required, int
      "variant": "tg-llava-qwen2-7b",         # required, project variant id
      "method": "TG-LLaVA",                   # optional, default from the variant table
      "llm": "Qwen2-7B",                      # optional, default from the variant table
      "toolkit": "vlmevalkit",                # optional: "vlmevalkit" | "lmms-eval"
      "toolkit_version": "0.0.20",            # optional, string
      "model_name": "TG-LLaVA-Qwen2-7B",      # optional: the toolkit-side model name
      "checkpoint": "ckpts/tg-qwen2",         # optional: path or hub id of the weights
      "created_at": "2026-01-12T18:00:00+00:00",  # optional, ISO-8601
      "switches": {"text_guided_mask": true, "detail_perceiver": true},  # optional (ablations)
      "extra": {}                             # optional, free-form
    }

Where it is looked for: VLMEvalKit — the run folder (``T…/``) first, then the model folder
(``work_dir/<model>/``); lmms-eval — the folder of the ``*_results.json`` (``output_path/<model>/``).
The nearest one applies to every score file below it. Unknown keys are an error (a typo would
otherwise be ignored); so is a missing ``variant``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tg_llava_eval.results.errors import ResultFileError

logger = logging.getLogger(__name__)

#: File name of the manifest.
MANIFEST_NAME = "tg_llava_run.json"
#: The schema version this module reads and writes.
SCHEMA_VERSION = 1
#: Names of the two ablation switches (the model config's ``use_text_guided_mask`` and
#: ``use_detail_perceiver``); a manifest's ``switches`` may only use these keys.
SWITCH_NAMES = ("text_guided_mask", "detail_perceiver")


@dataclass(frozen=True)
class RunManifest:
    """Parsed ``tg_llava_run.json`` (see the module docstring for the JSON schema).

    Attributes:
        variant: Project variant id (required).
        method, llm: Optional overrides of the variant table's values.
        toolkit, toolkit_version, model_name, checkpoint, created_at: Optional run facts.
        switches: Optional ablation switches ``{name: bool}`` with names from :data:`SWITCH_NAMES`.
        extra: Optional free-form mapping (kept in the records' ``manifest`` column).
        schema_version: Always :data:`SCHEMA_VERSION` here.
    """

    variant: str
    method: str = ""
    llm: str = ""
    toolkit: str = ""
    toolkit_version: str = ""
    model_name: str = ""
    checkpoint: str = ""
    created_at: str = ""
    switches: Mapping[str, bool] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without empty optional fields."""
        data = asdict(self)
        return {k: v for k, v in data.items() if v not in ("", {}, None) or k in ("variant", "schema_version")}


_STRING_FIELDS = ("variant", "method", "llm", "toolkit", "toolkit_version", "model_name", "checkpoint", "created_at")
_KNOWN_FIELDS = set(_STRING_FIELDS) | {"switches", "extra", "schema_version"}


def parse_run_manifest(data: Any, source: str | Path) -> RunManifest:
    """Validate a decoded manifest.

    Args:
        data: The decoded JSON value.
        source: File name for error messages.

    Returns:
        The manifest.

    Raises:
        ResultFileError: Not an object, wrong schema version, unknown keys, missing ``variant``,
            or a field of the wrong type.
    """
    if not isinstance(data, dict):
        raise ResultFileError(source, f"a run manifest must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _KNOWN_FIELDS)
    if unknown:
        raise ResultFileError(source, f"unknown manifest key(s) {unknown}; allowed: {sorted(_KNOWN_FIELDS)}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ResultFileError(
            source, f"schema_version must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}"
        )
    for name in _STRING_FIELDS:
        if name in data and not isinstance(data[name], str):
            raise ResultFileError(source, f"manifest field {name!r} must be a string, got {data[name]!r}")
    if not data.get("variant"):
        raise ResultFileError(source, "manifest field 'variant' is required and must not be empty")
    switches = data.get("switches", {})
    if not isinstance(switches, dict) or any(
        k not in SWITCH_NAMES or not isinstance(v, bool) for k, v in switches.items()
    ):
        raise ResultFileError(source, f"'switches' must map {list(SWITCH_NAMES)} to true/false, got {switches!r}")
    extra = data.get("extra", {})
    if not isinstance(extra, dict):
        raise ResultFileError(source, f"'extra' must be a JSON object, got {extra!r}")
    return RunManifest(**{k: v for k, v in data.items()})


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
    """Write ``manifest`` as ``<directory>/tg_llava_run.json`` (what the evaluation wrappers call).

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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
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
