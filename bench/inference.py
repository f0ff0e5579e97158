"""Inference benchmark (issue 2): prints one JSON object.

On the tiny config (always):
* ``tg_over_baseline``: per-sample generation latency of TG-LLaVA / LLaVA-1.5 (same sizes);
* ``baseline_over_hf_llava``: LLaVA-1.5 of our code / transformers' ``LlavaForConditionalGeneration``
  with the same weights (the cost of our wrapper around the same computation);
* ``cache_speedup``: wall time of 4 questions per image without / with the vision-feature cache.

With CUDA (real dimensions: CLIP-L/336 towers, a 7B-shaped Qwen2 LLM, random weights, bf16):
prefill and decode tokens/s of TG-LLaVA and LLaVA-1.5.

Usage: ``python bench/inference.py [--repeats N] [--skip-real]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_common import keep_stdout_for_json  # noqa: E402 - bench/ is the script folder
from PIL import Image

from tg_llava_eval.checkpoints.converting import hf_llava_config, to_hf_llava_state_dict
from tg_llava_eval.checkpoints.creating import create_checkpoint
from tg_llava_eval.inference import GenerationRequest, TGLlavaEngine
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.variants import get_variant

logger = logging.getLogger("bench.inference")
QUESTIONS = ["What colour is the shape on the left?", "Is there a circle?", "How many squares are there?",
             "Which shape is at the top right?"]


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tiny_images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64, 48), (40 * i % 255, 90, 160)) for i in range(n)]


def tiny_latencies(workdir: Path, repeats: int) -> dict:
    tg = TGLlavaEngine.from_pretrained(create_checkpoint("tiny", workdir / "tiny"), device="cpu", cache_vision=False)
    base = TGLlavaEngine.from_pretrained(create_checkpoint("tiny-baseline", workdir / "base"), device="cpu",
                                         cache_vision=False)
    image = tiny_images(1)[0]
    request = [GenerationRequest(QUESTIONS[0], images=[image], max_new_tokens=16)]
    t_tg = timed(lambda: tg.generate(request), repeats)
    t_base = timed(lambda: base.generate(request), repeats)

    # transformers' LLaVA with the baseline's weights, same prompt tensors.
    from transformers import LlavaForConditionalGeneration

    hf = LlavaForConditionalGeneration(hf_llava_config(base.model.config)).eval()
    mapped = to_hf_llava_state_dict(base.model.state_dict())
    hf.load_state_dict(mapped, strict=False)
    processor = base.processor
    prompt = processor.apply_template(QUESTIONS[0], has_image=True)
    batch = processor([prompt], [image], [processor.inference_guide_text(QUESTIONS[0])])
    gen = dict(max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=processor.pad_token_id)

    def ours_direct():
        with torch.no_grad():
            base.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                pixel_values=batch["pixel_values"], **gen)

    def hf_direct():
        with torch.no_grad():
            hf.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        pixel_values=batch["pixel_values"], **gen)

    t_ours = timed(ours_direct, repeats)
    t_hf = timed(hf_direct, repeats)

    # Cache: 4 questions about each of 4 images, one engine with and one without the cache.
    images = tiny_images(4)
    many = [GenerationRequest(q, images=[img], max_new_tokens=8) for img in images for q in QUESTIONS]
    cached = TGLlavaEngine(tg.model, tg.processor, cache_vision=True)
    uncached = TGLlavaEngine(tg.model, tg.processor, cache_vision=False)
    t_uncached = timed(lambda: uncached.generate(many, batch_size=4), repeats)
    cached.cache.clear()
    start = time.perf_counter()
    cached.generate(many, batch_size=4)
    t_cached = time.perf_counter() - start
    return {
        "tiny_tg_latency_s": t_tg,
        "tiny_baseline_latency_s": t_base,
        "tg_over_baseline": t_tg / t_base,
        "baseline_generate_s": t_ours,
        "hf_llava_generate_s": t_hf,
        "baseline_over_hf_llava": t_ours / t_hf,
        "cache_speedup_4q_per_image": t_uncached / t_cached,
        "cache_tower_calls": cached.cache_info()["tower_calls"],
        "uncached_tower_calls_per_pass": len(many),
    }


def _time_on_cuda(model, inputs: dict, prompt_tokens: int, repeats: int, new_tokens: int = 64) -> dict:
    """Prefill and greedy-decode throughput of one model on CUDA, and its peak memory."""

    def prefill():
        with torch.no_grad():
            model(**inputs)
        torch.cuda.synchronize()

    def decode():
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        torch.cuda.synchronize()

    t_prefill = timed(prefill, repeats)
    t_total = timed(decode, repeats)
    return {
        "prefill_tokens_per_s": prompt_tokens / t_prefill,
        "decode_tokens_per_s": new_tokens / max(t_total - t_prefill, 1e-9),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def real_dimensions(repeats: int) -> dict:
    """CLIP-L/336 + a 7B-shaped Qwen2 LLM, random weights, bf16, on CUDA."""
    results = {}
    for name in ("tg-llava-qwen2-7b", "llava-1.5-qwen2-7b"):
        config = get_variant(name).config()
        with torch.device("cuda"):
            model = TGLlavaForConditionalGeneration(config).to(torch.bfloat16).eval()
        n = config.num_image_tokens
        prompt = torch.cat([torch.randint(0, 1000, (1, 40)), torch.full((1, n), config.image_token_id),
                            torch.randint(0, 1000, (1, 20))], dim=1).cuda()
        inputs = dict(
            input_ids=prompt, attention_mask=torch.ones_like(prompt),
            pixel_values=torch.randn(1, 3, 336, 336, device="cuda", dtype=torch.bfloat16),
            crop_pixel_values=torch.randn(1, config.num_crops, 3, 336, 336, device="cuda", dtype=torch.bfloat16),
            guide_input_ids=torch.randint(0, 49000, (1, 20), device="cuda"),
            guide_attention_mask=torch.ones(1, 20, dtype=torch.long, device="cuda"),
        )
        results[name] = _time_on_cuda(model, inputs, prompt.shape[1], repeats)
        del model
        torch.cuda.empty_cache()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-real", action="store_true", help="skip the CUDA real-dimension part")
    args = parser.parse_args(argv)
    keep_stdout_for_json()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    report = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as workdir:
        report["tiny"] = tiny_latencies(Path(workdir), args.repeats)
    if torch.cuda.is_available() and not args.skip_real:
        report["device"] = torch.cuda.get_device_name()
        report["real"] = real_dimensions(max(1, args.repeats // 2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
