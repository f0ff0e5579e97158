"""The demo's phase runner and the fingerprints that decide whether a finished phase is reused.

Each phase leaves a marker ``<out>/.phases/<name>.json`` holding the fingerprint of what it
depended on and its (JSON) result; a second run returns the stored result of a phase whose
fingerprint did not change, and redoes the phase, from empty output folders, when it did. A
fingerprint hashes the settings the phase reads, the stored format (:data:`PHASE_FORMAT`), the
data generator's version and, from the training on, the trained presets' configs and the
pretrained parts' bytes. Which change redoes which phase: ``docs/demo.md``, "Phases".
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .settings import TRAINED, DemoSettings

#: Version of what the phases store; bumped when a stored result changes shape (2: the data card
#: has ``question_prior``; 3: the report keeps the held-out counts), so that phases finished by an
#: older version are redone, not misread.
PHASE_FORMAT = 3
#: Version of the report phase alone (collect + leaderboard); bumped when the report changes
#: without its inputs changing (2: lmms-eval rows named through ``report/models.csv``), so that
#: only the report is redone, not the training before it.
REPORT_FORMAT = 2


@functools.cache
def _preset_configs() -> str:
    """The trained presets' configs (sizes, template) as JSON, built once per process."""
    from ..variants import get_variant

    presets = {name: get_variant(name).config().to_dict() for name in sorted(TRAINED.values())}
    return json.dumps(presets, sort_keys=True, default=str)


@functools.cache
def _components_digest(components: str | None) -> str | None:
    """SHA-256 over the files of the pretrained parts (names and bytes), once per process."""
    if components is None:
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(components).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(components)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _code_versions() -> dict[str, Any]:
    """What besides the settings decides every phase: the stored format and the data generator's
    version, so that a demo folder made by an older version of the package is redone, not reused."""
    from .synthetic.dataset import GENERATOR_VERSION

    return {"phase_format": PHASE_FORMAT, "generator_version": GENERATOR_VERSION}


def _model_inputs(settings: DemoSettings) -> dict[str, Any]:
    """What the trained models depend on besides the settings and the data: the trained presets'
    configs and the pretrained parts' bytes (the data phase does not, so changing them redoes the
    training and what follows it, not the data)."""
    return {"presets": _preset_configs(), "components": _components_digest(settings.components)}


def fingerprint(settings: DemoSettings, *fields: str, **inputs: Any) -> str:
    """Hash of the settings a phase depends on, of ``inputs`` and of the code versions (the stored
    format and the data generator's version)."""
    values = {f: getattr(settings, f) for f in fields} | _code_versions() | inputs
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def phase_fingerprints(settings: DemoSettings) -> tuple[str, str]:
    """Fingerprints of the data phase and of the training (which every later phase builds on)."""
    data_fp = fingerprint(settings, "seed", "n_stage1", "n_stage2", "n_test", "image_size")
    train_fp = data_fp + fingerprint(settings, "pretrain_steps", "finetune_steps", "batch_size",
                                     "gradient_accumulation_steps", "pretrain_lr", "finetune_lr",
                                     **_model_inputs(settings))
    return data_fp, train_fp


class Phases:
    """Runs phases, skipping those whose marker has the same fingerprint.

    Attributes:
        dir: The markers' folder, ``<out>/.phases``.
        fresh: Redo every phase regardless of its marker.
        seconds: Phase name -> seconds it took in this run (0 when reused).
        reused: Names of the phases reused in this run, in order.
        progress: Called with one line per finished or reused phase.
    """

    def __init__(self, out: Path, fresh: bool, progress: Callable[[str], None]):
        self.dir = out / ".phases"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fresh = fresh
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []
        self.progress = progress

    def run(self, name: str, fingerprint: str, fn: Callable[[], Any], outputs: tuple[Path, ...] = ()) -> Any:
        """``fn()``'s result, or the stored one when the marker has ``fingerprint``.

        ``outputs`` are the folders the phase writes: a redone phase starts without them, so its
        results never mix with an older run's files (the trainer would reuse an older initial
        checkpoint, the toolkits' output folders would keep older result files).
        """
        marker = self.dir / f"{name}.json"
        if not self.fresh and marker.exists():
            saved = json.loads(marker.read_text())
            if saved.get("fingerprint") == fingerprint:
                self.reused.append(name)
                self.seconds[name] = 0.0
                self.progress(f"{name}: reused (finished earlier)")
                return saved.get("result")
        for folder in outputs:
            shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = time.perf_counter() - start
        marker.write_text(json.dumps({"fingerprint": fingerprint, "result": result, "seconds": self.seconds[name]},
                                     indent=2, default=str))
        self.progress(f"{name}: done in {self.seconds[name]:.0f} s")
        return result


__all__ = ["PHASE_FORMAT", "REPORT_FORMAT", "Phases", "fingerprint", "phase_fingerprints"]
