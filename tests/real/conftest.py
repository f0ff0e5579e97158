"""Session fixtures of the real-width tier: torch threads, the runtime's RSS, a CLIP-L/336
``CLIPModel`` with the real CLIP BPE, a test image; and the peak-RSS table printed at the end.

Threads: the tier's cost is large matmuls (CLIP-L/336, 4-5k-wide LLM layers), which scale with
cores, unlike the tiny models elsewhere in the suite that are per-op-overhead bound (the Makefile's
``OMP_NUM_THREADS=1``); the tier asks torch for every core the machine has
(``torch.set_num_threads(os.cpu_count())``, per module) and restores the setting after each.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from .memory import GIB, TOLERANCE, current_rss, release_freed_memory

#: Printed in the terminal summary: one row per measured case.
MEMORY_ROWS: list[dict] = []
#: Size of the test image (not square: the processor pads it to a square first).
IMAGE_WIDTH, IMAGE_HEIGHT = 500, 375
#: The CLIP-L/336 CLIPModel's contrastive projection width (openai/clip-vit-large-patch14-336).
CLIP_PROJECTION_DIM = 768


@pytest.fixture(scope="module", autouse=True)
def real_threads():
    """torch on all cores for each module of the tier (restored after it, so that the rest of a
    ``make test`` run keeps its one thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def runtime_rss() -> int:
    """RSS of the process before the tier builds any model: Python + torch + transformers."""
    import tokenizers  # noqa: F401
    import transformers  # noqa: F401

    from tg_llava_eval.modeling import TGLlavaForConditionalGeneration  # noqa: F401
    from tg_llava_eval.training import trainer  # noqa: F401

    release_freed_memory()
    return current_rss()


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory):
    """Scratch folder of the tier (removed at the end: it holds several GB)."""
    folder = tmp_path_factory.mktemp("real")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def test_image(real_dir):
    """A deterministic 500x375 RGB image (gradient + noise), also saved as PNG for training."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH]
    pixels = np.stack([x * 255 // IMAGE_WIDTH, y * 255 // IMAGE_HEIGHT, (x + y) % 256], axis=-1)
    pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype("uint8")
    image = Image.fromarray(pixels, "RGB")
    image.save(real_dir / "image.png")
    return image


@pytest.fixture(scope="session")
def clip_dir(real_dir, runtime_rss):
    """A random CLIP ViT-L/14-336 ``CLIPModel`` (the preset's vision and text towers) saved in HF
    format, with the real CLIP BPE tokenizer (77 positions)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from tg_llava_eval.processing import build_guide_tokenizer
    from tg_llava_eval.variants import PAPER_LLMS, get_variant

    reference = get_variant(f"tg-llava-{PAPER_LLMS[0]}").config()
    folder = real_dir / "clip-vit-large-patch14-336"
    config = CLIPConfig(
        text_config=reference.guide_config.to_dict(),
        vision_config=reference.vision_config.to_dict(),
        projection_dim=CLIP_PROJECTION_DIM,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(config)
    model.save_pretrained(folder)
    build_guide_tokenizer(model_max_length=reference.guide_max_length).save_pretrained(folder)
    del model
    release_freed_memory()
    return folder


def record_memory(case: str, llm: str, peak, estimate) -> None:
    """Print one case's peak RSS beside its estimate; fail when it exceeds it by > TOLERANCE."""
    row = dict(case=case, llm=llm, peak_gib=peak.bytes / GIB, estimate_gib=estimate.total / GIB,
               ratio=peak.bytes / estimate.total, method=peak.method, parts=estimate.describe())
    MEMORY_ROWS.append(row)
    print(f"[real] {llm:<11} {case:<22} peak RSS {row['peak_gib']:6.2f} GiB, estimate {row['estimate_gib']:6.2f} GiB "
          f"({row['ratio']:.2f}x; {estimate.describe()})")
    assert peak.bytes <= (1 + TOLERANCE) * estimate.total, (
        f"{case} ({llm}): peak RSS {row['peak_gib']:.2f} GiB exceeds the estimate {row['estimate_gib']:.2f} GiB "
        f"by more than {TOLERANCE:.0%} ({estimate.describe()})"
    )


def pytest_terminal_summary(terminalreporter):
    if not MEMORY_ROWS:
        return
    terminalreporter.section("real-width tier: peak RSS per case vs estimate (GiB)")
    for row in MEMORY_ROWS:
        terminalreporter.write_line(
            f"{row['llm']:<11} {row['case']:<22} {row['peak_gib']:7.2f} {row['estimate_gib']:7.2f} "
            f"{row['ratio']:5.2f}x  [{row['method']}] {row['parts']}"
        )
