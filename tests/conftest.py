"""Session fixtures: offline environment, tiny checkpoints built locally (files from outside the
repository are found by ``tests/shared_files.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No hub, ever: every test builds its models and tokenizers locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init ``tiny`` TG-LLaVA checkpoint (seed 0), written once per session."""
    from tg_llava_eval.checkpoints.creating import create_checkpoint

    return create_checkpoint("tiny", tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_baseline_checkpoint(tmp_path_factory) -> Path:
    """A random-init ``tiny-baseline`` (LLaVA-1.5 switches) checkpoint (seed 0)."""
    from tg_llava_eval.checkpoints.creating import create_checkpoint

    return create_checkpoint("tiny-baseline", tmp_path_factory.mktemp("ckpt") / "tiny-baseline", seed=0)


@pytest.fixture(autouse=True)
def _grad_mode_on():
    """Importing VLMEvalKit calls ``torch.set_grad_enabled(False)`` process-wide
    (``vlmeval/vlm/__init__.py``), possibly while pytest collects the toolkit tests; every test
    starts with PyTorch's default (gradients on) whatever was imported before it."""
    import torch

    torch.set_grad_enabled(True)
    yield


@pytest.fixture
def one_torch_thread():
    """PyTorch on one intra-op thread for the test (restored after): tiny models are bound by
    per-operation overhead, and tests that train them run several times faster on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
