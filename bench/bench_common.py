"""What several benchmarks share (run as scripts, they import it from their own folder)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_datasets() -> ModuleType:
    """The deterministic VLMEvalKit table writer shared with the tests (``tests/data/vlmeval/tiny_datasets.py``)."""
    spec = importlib.util.spec_from_file_location("tiny_datasets", REPO_ROOT / "tests" / "data" / "vlmeval" / "tiny_datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
