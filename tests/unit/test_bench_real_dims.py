"""bench/real_dims.py on the tiny preset, its FLOP model against torch's own count, and the bench
scripts' stdout guard (their stdout carries JSON only, DeepSpeed's import-time warning included).

The real-width run takes minutes and gigabytes: it is not run here (docs/performance.md has its
figures); the tiny run goes through the same code."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
SCRIPT = BENCH / "real_dims.py"


@pytest.mark.slow
def test_tiny_run_prints_one_json_object():
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--repeats", "1", "--threads", "1"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.lstrip().startswith("{")
    report = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert report["variants"] == {"tg": "tiny", "baseline": "tiny-baseline"}
    assert {"start", "end"} == set(report["loadavg"]) and len(report["loadavg"]["start"]) == 3
    assert set(report["visual_branch"]["breakdown_s"]) == {"tower_image", "tower_crops", "guide_tower", "fom_dp_projector"}
    sizes = report["sizes"]
    assert sizes["llm_layers"] == 1
    assert sizes["visual_tokens"]["tg"] == sizes["visual_tokens"]["baseline"] + sizes["detail_latents"]
    assert sizes["prompt_tokens"]["tg"] - sizes["prompt_tokens"]["baseline"] == sizes["detail_latents"]
    must = report["must_show"]
    assert must["bound"] == 1.15 and must["enforced"] is False  # the bound is about real widths
    assert {"tg_visual_over_five_tower_passes", "flop_model", "within_bound"} <= set(must)
    one_call = report["one_call_for_five"]
    assert one_call["identical_features"] is True and one_call["model_tower_calls_per_image"] in (1, 2)
    assert report["flop_model"]["tg_over_baseline_visual"] > report["flop_model"]["tg_over_five_tower_passes"] > 1
    assert all(len(values) == 1 and values[0] > 0 for values in report["samples"].values())
    assert report["prefill"]["tg_over_baseline_tokens"] > 1


@pytest.fixture
def real_dims(monkeypatch):
    """The script as a module (it imports ``bench_common`` from its own folder)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("real_dims", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flop_model_equals_torch_flop_count(real_dims):
    """With eager attention every matmul is an op that ``FlopCounterMode`` counts: the model built
    from the config sizes must give exactly its count, part by part."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tg_llava_eval.checkpoints.creating import config_for_tokenizers
    from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
    from tg_llava_eval.processing import build_guide_tokenizer, build_llm_tokenizer
    from tg_llava_eval.variants import TINY_GUIDE_MERGES, get_variant

    preset = get_variant("tiny")
    config = config_for_tokenizers(preset, build_llm_tokenizer(preset.template), build_guide_tokenizer(TINY_GUIDE_MERGES),
                                   text_config=real_dims.ONE_LAYER, attn_implementation="eager")
    torch.manual_seed(0)
    model = TGLlavaForConditionalGeneration(config).eval().requires_grad_(False)
    size, guide_tokens, prompt = config.image_size, 9, {"tg": 70, "baseline": 62}
    pixels = torch.randn(1, 3, size, size)
    crops = torch.randn(1, config.num_crops, 3, size, size)
    guide_ids = torch.randint(0, config.guide_config.vocab_size, (1, guide_tokens))
    with torch.no_grad():
        patch, crop_features = model.get_image_features(pixels, crops)
        pooled, states = model.get_guide_features(guide_ids)

    def counted(fn) -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / real_dims.TERA

    def prefill(tokens):
        return lambda: model.language_model(inputs_embeds=torch.randn(1, tokens, config.text_config.hidden_size),
                                            logits_to_keep=1)

    measured = {
        "tower_pass": counted(lambda: model._select_patch_features(pixels)),
        "guide_tower": counted(lambda: model.get_guide_features(guide_ids)),
        "text_guided_mask": counted(lambda: model.text_guided_mask(pooled)),
        "detail_perceiver": counted(lambda: model.detail_perceiver(crop_features, states)),
        "projector": counted(lambda: model.multi_modal_projector(patch)),
        "prefill_tg": counted(prefill(prompt["tg"])),
        "prefill_baseline": counted(prefill(prompt["baseline"])),
    }
    modelled = real_dims.flop_model(config, guide_tokens=guide_tokens, prompt_tokens=prompt)["tflops"]
    assert {name: pytest.approx(modelled[name], rel=1e-9) for name in measured} == measured


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
def test_keep_stdout_for_json_sends_deepspeed_to_stderr():
    code = ("import logging, sys; sys.path.insert(0, sys.argv[1]); "
            "from bench_common import keep_stdout_for_json; keep_stdout_for_json(); "
            "import deepspeed; logging.getLogger('DeepSpeed').warning('a later DeepSpeed warning')")
    result = subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""
    assert "a later DeepSpeed warning" in result.stderr
