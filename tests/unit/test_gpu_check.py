"""bench/gpu_check.sh and bench/real_width_gpu.py on a machine without a GPU: the script parses,
refuses to run with one line, and its Python sections run end to end on the tiny preset (the same
code as on the GPU, so that the one device run a session gets is not spent on a typo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"
SECTIONS = REPO / "bench" / "real_width_gpu.py"
NO_CUDA_STATUS = 3


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_gpu_check_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA: the script would run")
def test_gpu_check_refuses_without_cuda(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == NO_CUDA_STATUS
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no CUDA device" in result.stderr
    assert not (tmp_path / "out").exists()


def run_section(*args: str) -> list[dict]:
    result = subprocess.run([sys.executable, str(SECTIONS), *args, "--device", "cpu", "--tiny"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]  # every stdout line is JSON


@pytest.mark.slow
def test_generate_section_on_tiny():
    records = run_section("generate", "--hf-llava")
    by_section = {}
    for record in records:
        by_section.setdefault(record["section"], []).append(record)
    generate = by_section["generate"]
    assert [(r["variant"], r["batch"]) for r in generate] == [
        ("tiny", 1), ("tiny", 8), ("tiny-baseline", 1), ("tiny-baseline", 8)]
    tiny, baseline = generate[0], generate[2]
    # TG-DP's latents on top of the projected patches; the baseline has the patches only.
    assert tiny["visual_tokens"] > baseline["visual_tokens"]
    assert all(r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 for r in generate)
    assert by_section["batching"][0]["questions"] == 8
    assert [r["batch"] for r in by_section["tg_over_baseline"]] == [1, 8]
    for record in by_section["baseline_over_hf_llava"]:
        # Same weights and inputs as transformers' LLaVA: every key mapped, same logits and answers.
        assert record["missing_keys"] == [] and record["unexpected_keys"] == []
        assert record["max_abs_logit_diff"] == 0.0 and record["differing_answers"] == 0


@pytest.mark.slow
def test_generate_section_batch_one_without_checks():
    records = run_section("generate", "--batch-sizes", "1", "--no-batching-check")
    assert sorted({r["section"] for r in records}) == ["generate", "tg_over_baseline"]
    assert {r["batch"] for r in records} == {1}


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_train_section_on_tiny(stage):
    (record,) = run_section("train", "--stage", str(stage))
    assert record["stage"] == stage and record["loss_finite"] is True
    assert record["trainable_parameters"] > 0 and record["step_s"] > 0
