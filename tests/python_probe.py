"""Run a snippet in a fresh interpreter: the import-hygiene tests need an empty ``sys.modules``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: Generous for one cold interpreter importing transformers on 2 busy cores.
PROBE_TIMEOUT_S = 300


def run_python_probe(code: str, *, cwd: Path | None = None, forbidden_output: str | None = None) -> None:
    """Run ``code`` with this interpreter; fail with its stderr unless it exits 0 having printed ``ok``.

    The snippet's own ``assert`` statements carry the check; ``ok`` is appended here, so a snippet
    that stops early (an exception, ``sys.exit(0)``) cannot pass. ``forbidden_output``: a text that
    must not appear in its stdout or stderr (a warning a library logs instead of raising).
    """
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nprint('ok')\n"], capture_output=True, text=True, cwd=cwd, timeout=PROBE_TIMEOUT_S
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    if forbidden_output is not None:
        assert forbidden_output not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
