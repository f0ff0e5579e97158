"""What several benchmarks share (run as scripts, they import it from their own folder)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Installed libraries that write to stdout when first imported, and keep writing there.
#: DeepSpeed's logger (``deepspeed/utils/logging.py``) gets a ``StreamHandler(stream=sys.stdout)``
#: at import, and the import itself warns "Setting accelerator to CPU ..." on a machine without
#: CUDA. Nothing of ours imports it at module level; transformers does, lazily, whenever DeepSpeed
#: is installed: ``save_pretrained`` -> ``unwrap_model`` -> accelerate's
#: ``extract_model_from_parallel`` -> ``from deepspeed import DeepSpeedEngine``.
STDOUT_WRITING_IMPORTS = ("deepspeed",)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what is printed inside the block to stderr: for library calls that print progress
    (transformers' ``Trainer`` prints its log dicts with ``--disable_tqdm True``) in a script whose
    stdout is its JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def default_dtype(dtype) -> Iterator[None]:
    """Build modules inside the block with parameters created in ``dtype`` (a 7-13 B model made
    straight in bfloat16 never holds an fp32 copy); the previous default is restored after."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def keep_stdout_for_json() -> None:
    """Import :data:`STDOUT_WRITING_IMPORTS` now, with stdout sent to stderr while they load.

    A benchmark's stdout carries its JSON and nothing else (``python bench/X.py | python -m json.tool``).
    Imported under the redirection, DeepSpeed binds its log handler to stderr (the handler keeps
    the stream object it was given), so its import-time warning and every later DeepSpeed log line
    go to stderr; the later lazy imports find the module loaded. Call it first in ``main``.
    Libraries that are not installed are skipped.
    """
    with stdout_to_stderr():
        for name in STDOUT_WRITING_IMPORTS:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)


def tiny_datasets() -> ModuleType:
    """The deterministic VLMEvalKit table writer shared with the tests (``tests/data/vlmeval/tiny_datasets.py``)."""
    spec = importlib.util.spec_from_file_location("tiny_datasets", REPO_ROOT / "tests" / "data" / "vlmeval" / "tiny_datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
