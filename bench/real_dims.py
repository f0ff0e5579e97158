"""TG-LLaVA's visual branch and prefill against LLaVA-1.5's at real widths, on CPU (issue #16); prints one JSON object.

What is built: the preset's config (default ``tg-llava-vicuna-13b``: the cheapest LLM part, a 32k
vocabulary) with ``text_config.num_hidden_layers=1``, as the real-width test tier builds it — CLIP
ViT-L/14-336 towers, TG-FOM with 576 queries, TG-DP over 4 crops x 576 = 2304 positions -> 64
latents, the LLM at its real width, heads and vocabulary but one decoder layer — with random
weights, directly from the config (nothing is downloaded or written), on the CPU, tokenizers built
locally. LLaVA-1.5 (``llava-1.5-<llm>``) has the same vision tower and projector (checked: same
vision config, projector type and LLM config), so its visual branch is timed on the same modules.

What is timed (``torch.no_grad``, median of ``--repeats`` after ``--warmup`` rounds; the rounds go
over all parts in turn, so a change of the machine's load touches every part alike):

* the visual branch, broken down: vision tower on the image, tower on the 4 crops, guide tower on
  the question, TG-FOM + TG-DP + projector (``fuse_visual_features``), and each of those three;
* TG's visual branch end to end (``get_image_features`` + ``get_guide_features`` +
  ``fuse_visual_features``) and LLaVA-1.5's (tower on the image + projector): the measured ratio,
  next to the ratio of a FLOP model counted from the config sizes (:func:`flop_model`);
* the must-show: TG's visual branch over its own five tower passes (``get_image_features`` as the
  model calls it) at most :data:`MAX_TG_OVER_TOWER_PASSES`; exit status 1 when exceeded at real widths;
* one tower call for the five images (image + 4 crops batched as 5) against two calls (1, then 4),
  and whether both give identical features;
* prefill through the 1-layer LLM (``logits_to_keep=1`` and the KV cache, as ``generate``'s first
  step) of the prompt with 640 (TG) and 576 (LLaVA-1.5) visual tokens and a short question.

The load average (``os.getloadavg()``) at start and end is recorded: the machine may be shared.

Usage::

    python bench/real_dims.py [--llm vicuna-13b] [--repeats 3] [--dtype float32] [--threads N]
    python bench/real_dims.py --tiny --repeats 1      # the same code on the tiny preset (seconds)

Output: one JSON object on stdout (logs on stderr); ``"seconds"`` holds the medians, ``"samples"``
every timed run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import transformers
from bench_common import default_dtype, keep_stdout_for_json  # noqa: E402 - bench/ is the script folder
from PIL import Image

from tg_llava_eval.checkpoints.creating import config_for_tokenizers
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor, build_guide_tokenizer, build_llm_tokenizer
from tg_llava_eval.variants import TINY_GUIDE_MERGES, get_variant

logger = logging.getLogger("bench.real_dims")

#: Issue #16's must-show: TG's whole visual branch costs at most this many times its five tower passes.
MAX_TG_OVER_TOWER_PASSES = 1.15
#: The real-width tier's LLM depth (``tests/real``): the widths are real, one decoder layer.
ONE_LAYER = {"num_hidden_layers": 1}
#: transformers' ``Idefics2PerceiverLayer`` builds its MLP with ``intermediate_size=hidden_size * 4``.
PERCEIVER_MLP_RATIO = 4
#: Gated MLPs (Llama/Qwen2 decoder layers, Idefics2 perceiver): gate, up and down projections.
GATED_MLP_MATRICES = 3
#: FLOPs of one multiply-add.
FLOPS_PER_MAC = 2
TERA = 1e12
GIB = 1024**3
QUESTION = "What is written on the sign next to the red car?"
#: The test image of the real-width tier: not square, so the processor pads it first.
IMAGE_SIZE = (500, 375)


# ---------------------------------------------------------------------------------- FLOP model
def linear_flops(tokens: int, in_features: int, out_features: int) -> int:
    return FLOPS_PER_MAC * tokens * in_features * out_features


def attention_flops(queries: int, keys: int, width: int) -> int:
    """``QK^T`` and ``AV`` over all heads (``width`` = heads x head dim), the full product."""
    return 2 * FLOPS_PER_MAC * queries * keys * width


def projector_flops(tokens: int, in_features: int, out_features: int, projector_type: str) -> int:
    """``TGLlavaProjector``: Linear(in->out) (+ Linear(out->out) for ``mlp2x_gelu``)."""
    flops = linear_flops(tokens, in_features, out_features)
    if projector_type == "mlp2x_gelu":
        flops += linear_flops(tokens, out_features, out_features)
    return flops


def clip_layers_flops(layers: int, tokens: int, width: int, intermediate: int) -> int:
    """CLIP encoder layers: q, k, v, out projections, attention, fc1 and fc2."""
    per_layer = (4 * linear_flops(tokens, width, width) + attention_flops(tokens, tokens, width)
                 + 2 * linear_flops(tokens, width, intermediate))
    return layers * per_layer


def flop_model(config, *, guide_tokens: int, prompt_tokens: dict[str, int]) -> dict:
    """Matmul FLOPs of every part, from the config sizes and the token counts of this run.

    Counted: every Linear, the patch convolution and the attention products (as the full product
    that eager attention computes, causal or not), so that torch's ``FlopCounterMode`` over the
    eager model gives the same numbers (``tests/unit/test_bench_real_dims.py``). Every encoder
    layer counts (``vision_feature_layer`` -2 selects a hidden state, but the tower runs all of
    them); the LLM's logits are those of the last position only (``logits_to_keep=1``).
    """
    vision, guide, qformer = config.vision_config, config.guide_config, config.qformer_config
    perceiver, text = config.perceiver_config, config.text_config
    patches, crops, latents = config.num_patches, config.num_crops, config.num_detail_tokens
    dv, h = vision.hidden_size, text.hidden_size

    vision_tokens = patches + int(config.vision_has_cls_token)
    patch_embedding = linear_flops(patches, vision.num_channels * vision.patch_size**2, dv)
    tower = patch_embedding + clip_layers_flops(vision.num_hidden_layers, vision_tokens, dv, vision.intermediate_size)
    guide_tower = clip_layers_flops(guide.num_hidden_layers, guide_tokens, guide.hidden_size, guide.intermediate_size)

    # TG-FOM: P queries through the Q-Former, cross-attending to one guide token.
    dq, queries = qformer.hidden_size, config.num_query_tokens
    fom = linear_flops(1, config.guide_pooled_size, qformer.encoder_hidden_size)
    for layer in range(qformer.num_hidden_layers):
        fom += 4 * linear_flops(queries, dq, dq) + attention_flops(queries, queries, dq)
        if layer % qformer.cross_attention_frequency == 0:
            fom += (2 * linear_flops(queries, dq, dq) + 2 * linear_flops(1, qformer.encoder_hidden_size, dq)
                    + attention_flops(queries, 1, dq))
        fom += 2 * linear_flops(queries, dq, qformer.intermediate_size)
    fom += linear_flops(queries, dq, dv)

    projector = projector_flops(patches, dv, h, config.projector_type)

    # TG-DP: crops -> pre_mlp, guide -> projection, latents attend to concat(context, latents).
    dp, positions = perceiver.hidden_size, config.num_crop_positions
    heads = perceiver.resampler_n_heads * perceiver.resampler_head_dim
    kv = perceiver.num_key_value_heads * perceiver.resampler_head_dim
    dp_flops = projector_flops(positions, dv, dp, "mlp2x_gelu") + linear_flops(guide_tokens, guide.hidden_size, dp)
    for context in config.perceiver_contexts:
        keys = (guide_tokens if context == "guide" else positions) + latents
        dp_flops += (linear_flops(latents, dp, heads) + 2 * linear_flops(keys, dp, kv)
                     + attention_flops(latents, keys, heads) + linear_flops(latents, heads, dp)
                     + GATED_MLP_MATRICES * linear_flops(latents, dp, PERCEIVER_MLP_RATIO * dp))
    dp_flops += projector_flops(latents, dp, h, "mlp2x_gelu")

    head_dim = getattr(text, "head_dim", None) or h // text.num_attention_heads
    q_width, kv_width = text.num_attention_heads * head_dim, text.num_key_value_heads * head_dim

    def prefill(tokens: int) -> int:
        layer = (linear_flops(tokens, h, q_width) + 2 * linear_flops(tokens, h, kv_width)
                 + attention_flops(tokens, tokens, q_width) + linear_flops(tokens, q_width, h)
                 + GATED_MLP_MATRICES * linear_flops(tokens, h, text.intermediate_size))
        return text.num_hidden_layers * layer + linear_flops(1, h, text.vocab_size)

    tg = (1 + crops) * tower + guide_tower + fom + dp_flops + projector
    baseline = tower + projector
    tflops = {
        "tower_pass": tower, "guide_tower": guide_tower, "text_guided_mask": fom,
        "detail_perceiver": dp_flops, "projector": projector,
        "qformer_plus_perceiver": fom + dp_flops, "tg_visual": tg, "baseline_visual": baseline,
        **{f"prefill_{name}": prefill(tokens) for name, tokens in prompt_tokens.items()},
    }
    return {
        "tflops": {name: value / TERA for name, value in tflops.items()},
        "tg_over_baseline_visual": tg / baseline,
        # The estimate (five tower passes + Q-Former + perceiver over one pass): projector and guide left out.
        "tg_over_one_tower_pass": ((1 + crops) * tower + fom + dp_flops) / tower,
        "tg_over_five_tower_passes": tg / ((1 + crops) * tower),
        "prefill_tg_over_baseline": prefill(prompt_tokens["tg"]) / prefill(prompt_tokens["baseline"]),
    }


# ---------------------------------------------------------------------------------- building
def build(args):
    """The TG model of ``args``' preset (random weights, on CPU), both processors, the preset names."""
    names = ("tiny", "tiny-baseline") if args.tiny else (f"tg-llava-{args.llm}", f"llava-1.5-{args.llm}")
    tg_preset, base_preset = (get_variant(name) for name in names)
    tokenizer = build_llm_tokenizer(tg_preset.template)
    guide = build_guide_tokenizer(TINY_GUIDE_MERGES if tg_preset.tiny else None)
    config = config_for_tokenizers(tg_preset, tokenizer, guide, text_config=ONE_LAYER)
    base_config = config_for_tokenizers(base_preset, tokenizer, guide, text_config=ONE_LAYER)
    if config.is_baseline or not base_config.is_baseline:
        raise SystemExit(f"{names[0]} must be TG-LLaVA and {names[1]} LLaVA-1.5")
    same = (config.vision_config.to_dict() == base_config.vision_config.to_dict()
            and config.vision_feature_layer == base_config.vision_feature_layer
            and config.projector_type == base_config.projector_type
            and config.text_config.to_dict() == base_config.text_config.to_dict())
    if not same:  # the baseline's visual branch is timed on the TG model's tower and projector
        raise SystemExit(f"{names[1]} does not share {names[0]}'s vision tower, projector and LLM sizes")

    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    with default_dtype(dtype):
        torch.manual_seed(0)
        model = TGLlavaForConditionalGeneration(config).eval()
    built_s = time.perf_counter() - start
    logger.info("built %s (%d layer LLM) in %.1f s", names[0], config.text_config.num_hidden_layers, built_s)
    processors = {"tg": TGLlavaProcessor.from_config(config, tokenizer, guide),
                  "baseline": TGLlavaProcessor.from_config(base_config, tokenizer, guide)}
    return model, processors, names, built_s


def sample_image() -> Image.Image:
    """A deterministic gradient + noise image (the real-width tier's kind of test image)."""
    width, height = IMAGE_SIZE
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1)
    return Image.fromarray(np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype("uint8"), "RGB")


# ---------------------------------------------------------------------------------- timing
def time_round_robin(parts: dict[str, Callable[[], object]], *, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Wall seconds of each part, ``warmup`` untimed then ``repeats`` timed rounds over all parts."""
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for round_index in range(warmup + repeats):
        for name, fn in parts.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                samples[name].append(elapsed)
        logger.info("round %d/%d done", round_index + 1, warmup + repeats)
    return samples


def tower_calls(model, fn: Callable[[], object]) -> int:
    """How many times ``fn`` calls the vision tower."""
    calls = []
    handle = model.vision_tower.register_forward_hook(lambda *_: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


def measure(model, processors, args) -> dict:
    """Time every part (see the module docstring) and derive the ratios."""
    image = sample_image()
    batches = {}
    for name, processor in processors.items():
        prompt = processor.apply_template(QUESTION, has_image=True)
        batches[name] = processor([prompt], [image], [processor.inference_guide_text(QUESTION)])
    tg = batches["tg"]
    pixels, crops = tg["pixel_values"].to(model.dtype), tg["crop_pixel_values"].to(model.dtype)
    flat_crops = crops.flatten(0, 1)
    five = torch.cat([pixels, flat_crops])
    guide_ids, guide_mask = tg["guide_input_ids"], tg["guide_attention_mask"]

    with torch.no_grad():
        patch, crop_features = model.get_image_features(pixels, crops)
        pooled, states = model.get_guide_features(guide_ids, guide_mask)
        visual = model.fuse_visual_features(patch, crop_features, pooled, states, guide_mask)
        separate = torch.cat([model._select_patch_features(pixels), model._select_patch_features(flat_crops)])
        one_call = model._select_patch_features(five)
        embeds = {}
        for name, tokens in (("tg", visual), ("baseline", model.multi_modal_projector(patch))):
            ids = batches[name]["input_ids"]
            embeds[name] = model._scatter_image_tokens(ids, model.get_input_embeddings()(ids), tokens)

    def tg_visual():
        p, c = model.get_image_features(pixels, crops)
        g_pooled, g_states = model.get_guide_features(guide_ids, guide_mask)
        return model.fuse_visual_features(p, c, g_pooled, g_states, guide_mask)

    def prefill(name):
        return lambda: model.language_model(inputs_embeds=embeds[name], attention_mask=batches[name]["attention_mask"],
                                            use_cache=True, logits_to_keep=1)

    guide_pooled = pooled.to(model.dtype)
    parts = {
        "tower_image": lambda: model._select_patch_features(pixels),
        "tower_crops": lambda: model._select_patch_features(flat_crops),
        "tower_five_one_call": lambda: model._select_patch_features(five),
        "five_tower_passes": lambda: model.get_image_features(pixels, crops),
        "guide_tower": lambda: model.get_guide_features(guide_ids, guide_mask),
        "fom_dp_projector": lambda: model.fuse_visual_features(patch, crop_features, pooled, states, guide_mask),
        "text_guided_mask": lambda: model.text_guided_mask(guide_pooled),
        "detail_perceiver": lambda: model.detail_perceiver(crop_features, states.to(model.dtype), guide_mask),
        "projector": lambda: model.multi_modal_projector(patch),
        "tg_visual": tg_visual,
        "baseline_visual": lambda: model.multi_modal_projector(model._select_patch_features(pixels)),
        "prefill_tg": prefill("tg"),
        "prefill_baseline": prefill("baseline"),
    }
    with torch.no_grad():
        calls = tower_calls(model, parts["five_tower_passes"])
        samples = time_round_robin(parts, repeats=args.repeats, warmup=args.warmup)
    seconds = {name: statistics.median(values) for name, values in samples.items()}

    config = model.config
    prompt_tokens = {name: int(batch["input_ids"].shape[1]) for name, batch in batches.items()}
    flops = flop_model(config, guide_tokens=int(guide_ids.shape[1]), prompt_tokens=prompt_tokens)
    over_passes = seconds["tg_visual"] / seconds["five_tower_passes"]
    separate_s = seconds["tower_image"] + seconds["tower_crops"]
    return {
        "sizes": {
            "image_size": config.image_size, "queries": config.num_query_tokens, "crops": config.num_crops,
            "crop_positions": config.num_crop_positions, "detail_latents": config.num_detail_tokens,
            "vision_width": config.vision_config.hidden_size, "llm_width": config.text_config.hidden_size,
            "llm_layers": config.text_config.num_hidden_layers, "llm_vocab": config.text_config.vocab_size,
            "guide_tokens": int(guide_ids.shape[1]), "prompt_tokens": prompt_tokens,
            "visual_tokens": {"tg": int(visual.shape[1]), "baseline": config.num_patches},
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "seconds": seconds,
        "visual_branch": {
            "breakdown_s": {name: seconds[name] for name in ("tower_image", "tower_crops", "guide_tower", "fom_dp_projector")},
            "tg_s": seconds["tg_visual"],
            "baseline_s": seconds["baseline_visual"],
            "tg_over_baseline_measured": seconds["tg_visual"] / seconds["baseline_visual"],
            "tg_over_baseline_flop_model": flops["tg_over_baseline_visual"],
        },
        "must_show": {
            "tg_visual_over_five_tower_passes": over_passes,
            "flop_model": flops["tg_over_five_tower_passes"],
            "bound": MAX_TG_OVER_TOWER_PASSES,
            "within_bound": over_passes <= MAX_TG_OVER_TOWER_PASSES,
            "enforced": not args.tiny,  # tiny towers are small next to the TG modules: the bound is about real widths
        },
        "one_call_for_five": {
            "model_tower_calls_per_image": calls,
            "separate_1_then_4_s": separate_s,
            "one_call_of_5_s": seconds["tower_five_one_call"],
            "separate_over_one_call": separate_s / seconds["tower_five_one_call"],
            "identical_features": bool(torch.equal(separate, one_call)),
            "max_abs_difference": float((separate - one_call).abs().max()),
        },
        "prefill": {
            "tg_640_s": seconds["prefill_tg"],
            "baseline_576_s": seconds["prefill_baseline"],
            "tg_over_baseline_measured": seconds["prefill_tg"] / seconds["prefill_baseline"],
            "tg_over_baseline_tokens": prompt_tokens["tg"] / prompt_tokens["baseline"],
            "tg_over_baseline_flop_model": flops["prefill_tg_over_baseline"],
        },
        "flop_model": flops,
        "samples": samples,
    }


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), so that a reader can tell machines apart."""
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", default="vicuna-13b", help="paper LLM of the preset pair tg-llava-LLM / llava-1.5-LLM")
    parser.add_argument("--tiny", action="store_true", help="the tiny / tiny-baseline presets (a quick run of this script)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the medians are reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch intra-op threads (default: every core; the Makefile's OMP_NUM_THREADS=1 is for tiny models)")
    return parser


def main(argv=None) -> int:
    """Build, time, print the JSON; exit 1 when the must-show bound is exceeded at real widths."""
    args = build_parser().parse_args(argv)
    keep_stdout_for_json()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    model, processors, names, built_s = build(args)
    report = {
        "benchmark": "real_dims", "variants": {"tg": names[0], "baseline": names[1]}, "device": "cpu",
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "dtype": args.dtype,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "repeats": args.repeats, "warmup": args.warmup, "build_s": built_s,
    }
    report.update(measure(model, processors, args))
    report["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    report["loadavg"] = {"start": list(load_start), "end": list(os.getloadavg())}
    print(json.dumps(report, indent=2))
    check = report["must_show"]
    if check["enforced"] and not check["within_bound"]:
        logger.error("TG visual branch / five tower passes = %.3f > %.2f", check["tg_visual_over_five_tower_passes"],
                     check["bound"])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
