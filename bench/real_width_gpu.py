"""Real-width GPU figures of TG-LLaVA, one section per call, one JSON object per line on stdout.

Run by ``bench/gpu_check.sh`` (which gives every section its own time limit); nothing is
downloaded: the models are the presets at full depth with random weights, built directly on the
GPU in bfloat16 with transformers' default attention (sdpa), and the tokenizers are built locally (the LLM tokenizer the
tests build for each template, the real CLIP BPE for the guide). Logging goes to stderr.

Sections:

* ``env``: device, versions;
* ``generate --llm L``: TG-LLaVA and its LLaVA-1.5 baseline (same sizes) at batch 1 and 8: prefill
  tokens/s (prompt + 640 / 576 visual tokens, towers included), decode tokens/s (``NEW_TOKENS`` new
  tokens, KV cache), TG over baseline, the greedy answers of 8 questions at batch 1 vs batch 8
  (count of differing answers), peak CUDA memory next to an estimate (weights + KV cache +
  activations);
* ``train --llm L --stage {1,2}``: one optimiser step at batch 1 (stage 1: projector, TG-FOM, TG-DP
  trainable, fp32 AdamW; stage 2: everything but the towers, with gradient checkpointing, AdamW on
  the bf16 weights), step time and peak memory next to an estimate.

``--device cpu --tiny`` runs the same code on the ``tiny`` preset (a smoke test of this script on
a machine without a GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time

import torch
from bench_common import default_dtype, keep_stdout_for_json  # noqa: E402 - bench/ is the script folder
from PIL import Image

from tg_llava_eval.modeling import TGLlavaConfig, TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor, build_guide_tokenizer, build_llm_tokenizer
from tg_llava_eval.variants import PAPER_LLMS, TINY_GUIDE_MERGES, get_variant

logger = logging.getLogger("bench.real_width_gpu")
GIB = 1024**3
NEW_TOKENS = 32
BATCH_SIZES = (1, 8)
REPEATS = 3
QUESTIONS = [
    "What is in the image?", "Describe the colours.", "Is there any text?", "What is at the top left?",
    "How bright is the picture?", "Count the shapes.", "What could this image be used for?", "Summarise it in one line.",
]
CAPTION = "A colourful gradient with fine noise across the whole frame."


def emit(record: dict) -> None:
    """One JSON line on stdout (the only thing this script prints)."""
    print(json.dumps(record, default=str), flush=True)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int = REPEATS) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs after one warm-up (seconds)."""
    fn()
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory(device: str) -> float:
    return torch.cuda.max_memory_allocated() / GIB if device == "cuda" else float("nan")


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def variant_name(llm: str, baseline: bool, tiny: bool) -> str:
    if tiny:
        return "tiny-baseline" if baseline else "tiny"
    return f"llava-1.5-{llm}" if baseline else f"tg-llava-{llm}"


def build(name: str, device: str, dtype: torch.dtype, tokenizers=None):
    """A random-weight model of preset ``name`` built on ``device`` in ``dtype``, and its processor."""
    preset = get_variant(name)
    tokenizer, guide = tokenizers or (
        build_llm_tokenizer(preset.template),
        build_guide_tokenizer(TINY_GUIDE_MERGES if preset.tiny else None),
    )
    config = preset.config(image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    if preset.tiny:  # the tiny presets take their vocabulary from the tokenizers
        from tg_llava_eval.checkpoints.creating import config_for_tokenizers

        config = config_for_tokenizers(preset, tokenizer, guide)
    with default_dtype(dtype), torch.device(device):
        torch.manual_seed(0)
        model = TGLlavaForConditionalGeneration(config).eval()
    processor = TGLlavaProcessor.from_config(config, tokenizer, guide)
    return model, processor, (tokenizer, guide)


def parameter_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_image() -> Image.Image:
    return Image.radial_gradient("L").convert("RGB").resize((500, 375))


def inputs_for(processor, questions, device):
    prompts = [processor.apply_template(q, has_image=True) for q in questions]
    guides = [processor.inference_guide_text(q) for q in questions]
    batch = processor(prompts, [test_image()] * len(questions), guides, padding_side="left")
    return {k: v.to(device) for k, v in batch.items()}


def kv_cache_bytes(config: TGLlavaConfig, tokens: int, batch: int, element: int) -> int:
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * tokens * batch * element


def prefill_decode(model, inputs: dict, device: str, pad_token_id: int) -> tuple[float, float]:
    """(prefill seconds, decode seconds per step) of ``model`` on ``inputs``: prefill = one forward
    keeping the last logits; decode = generating ``NEW_TOKENS`` minus generating 1 (the prefill
    and its first token), over ``NEW_TOKENS - 1`` steps with the KV cache."""
    greedy = dict(do_sample=False, pad_token_id=pad_token_id)
    with torch.no_grad():
        prefill = timed(lambda: model(**inputs, logits_to_keep=1), device)
        first = timed(lambda: model.generate(**inputs, max_new_tokens=1, **greedy), device)
        full = timed(lambda: model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                            **greedy), device)
    return prefill, max(full - first, 1e-9) / (NEW_TOKENS - 1)


def measure_variant(name: str, llm: str, device: str, dtype: torch.dtype, tokenizers, batch_sizes,
                    batching_check: bool) -> dict:
    """Prefill/decode figures of one preset at every batch size (and the batching check for TG).

    Returns ``records`` (batch -> record), ``tokenizers``, and the ``model`` and ``processor``
    (kept for the comparison with transformers' LLaVA; the caller drops them)."""
    element = torch.finfo(dtype).bits // 8
    reset_peak(device)
    start = time.perf_counter()
    model, processor, tokenizers = build(name, device, dtype, tokenizers)
    built_s = time.perf_counter() - start
    config = model.config
    records = {}
    for batch in batch_sizes:
        inputs = inputs_for(processor, QUESTIONS[:batch], device)
        tokens = inputs["input_ids"].shape[1]
        prefill, step = prefill_decode(model, inputs, device, processor.pad_token_id)
        records[batch] = dict(
            section="generate", llm=llm, variant=name, batch=batch, prompt_tokens=tokens,
            visual_tokens=config.num_image_tokens, attention=config.text_config._attn_implementation,
            build_s=round(built_s, 2), prefill_s=prefill, prefill_tokens_per_s=batch * tokens / prefill,
            decode_tokens_per_s=batch / step, peak_gib=peak_memory(device),
            estimate_gib=(parameter_bytes(model) + kv_cache_bytes(config, tokens + NEW_TOKENS, batch, element)
                          + batch * tokens * config.text_config.intermediate_size * element * 4) / GIB,
        )
        emit(records[batch])
    if batching_check and config.use_text_guided_mask:
        # Greedy answers at batch 1 vs batch 8 (left padding, masked guide padding).
        new = NEW_TOKENS // 2
        greedy = dict(do_sample=False, pad_token_id=processor.pad_token_id, max_new_tokens=new)
        with torch.no_grad():
            single = [model.generate(**inputs_for(processor, [q], device), **greedy)[0, -new:] for q in QUESTIONS]
            batched = model.generate(**inputs_for(processor, QUESTIONS, device), **greedy)[:, -new:]
        differing = sum(not torch.equal(a, b) for a, b in zip(single, batched))
        emit(dict(section="batching", llm=llm, variant=name, questions=len(QUESTIONS), differing_answers=differing))
    return dict(records=records, tokenizers=tokenizers, model=model, processor=processor)


def compare_hf_llava(base: dict, llm: str, device: str, dtype: torch.dtype, batch_sizes) -> None:
    """Our LLaVA-1.5 baseline against transformers' ``LlavaForConditionalGeneration`` at the same
    config and weights (``hf_llava_config`` / ``to_hf_llava_state_dict``): time ratios, the largest
    difference of the last logits, and how many greedy answers differ."""
    from transformers import LlavaForConditionalGeneration

    from tg_llava_eval.checkpoints.converting import hf_llava_config, to_hf_llava_state_dict

    ours, processor = base["model"], base["processor"]
    with default_dtype(dtype), torch.device(device):
        hf = LlavaForConditionalGeneration(hf_llava_config(ours.config)).eval()
    missing, unexpected = hf.load_state_dict(to_hf_llava_state_dict(ours.state_dict()), strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    greedy = dict(do_sample=False, pad_token_id=processor.pad_token_id, max_new_tokens=NEW_TOKENS // 2)
    for batch in batch_sizes:
        inputs = inputs_for(processor, QUESTIONS[:batch], device)
        hf_inputs = {key: inputs[key] for key in ("input_ids", "attention_mask", "pixel_values")}
        prefill, step = prefill_decode(hf, hf_inputs, device, processor.pad_token_id)
        with torch.no_grad():
            ours_logits = ours(**inputs, logits_to_keep=1).logits.float()
            hf_logits = hf(**hf_inputs, logits_to_keep=1).logits.float()
            ours_answers = ours.generate(**inputs, **greedy)[:, -greedy["max_new_tokens"]:]
            hf_answers = hf.generate(**hf_inputs, **greedy)[:, -greedy["max_new_tokens"]:]
        record = base["records"][batch]
        emit(dict(section="baseline_over_hf_llava", llm=llm, batch=batch, missing_keys=missing,
                  unexpected_keys=unexpected, hf_prefill_s=prefill,
                  prefill_time_ratio=record["prefill_s"] / prefill,
                  decode_tokens_per_s_ratio=record["decode_tokens_per_s"] / (batch / step),
                  max_abs_logit_diff=float((ours_logits - hf_logits).abs().max()),
                  differing_answers=sum(not torch.equal(a, b) for a, b in zip(ours_answers, hf_answers))))
    del hf


def generate_section(llm: str, device: str, dtype: torch.dtype, tiny: bool, batch_sizes, batching_check: bool,
                     hf_llava: bool) -> None:
    tg = measure_variant(variant_name(llm, False, tiny), llm, device, dtype, None, batch_sizes, batching_check)
    tg_records, tokenizers = tg["records"], tg["tokenizers"]
    del tg
    reset_peak(device)
    base = measure_variant(variant_name(llm, True, tiny), llm, device, dtype, tokenizers, batch_sizes, False)
    for batch in batch_sizes:
        emit(dict(section="tg_over_baseline", llm=llm, batch=batch,
                  prefill_time_ratio=tg_records[batch]["prefill_s"] / base["records"][batch]["prefill_s"],
                  decode_tokens_per_s_ratio=tg_records[batch]["decode_tokens_per_s"]
                  / base["records"][batch]["decode_tokens_per_s"]))
    if hf_llava:
        compare_hf_llava(base, llm, device, dtype, batch_sizes)


def train_section(llm: str, stage: int, device: str, dtype: torch.dtype, tiny: bool) -> None:
    """One optimiser step of stage ``stage`` at batch 1, through the library's stage groups."""
    from tg_llava_eval.training.recipe import get_recipe
    from tg_llava_eval.training.stages import apply_stage_groups

    recipe = get_recipe("pretrain" if stage == 1 else "finetune")
    name = variant_name(llm, False, tiny)
    reset_peak(device)
    # Stage 1 trains ~0.1 B parameters: fp32 weights as the trainer loads them; stage 2 (7-13 B
    # trainable) keeps the bf16 weights (AdamW moments in bf16 too) to fit one GPU.
    model, processor, _ = build(name, device, torch.float32 if stage == 1 else dtype)
    apply_stage_groups(model, recipe.trainable_groups)
    if recipe.gradient_checkpointing and stage == 2:
        model.language_model.gradient_checkpointing_enable()
    model.train()
    template = getattr(get_variant(name), recipe.template_attribute)
    train_processor = processor if processor.template.name == template else processor.with_template(template)
    sample = train_processor.tokenize_training_sample(
        [{"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": CAPTION}], True)
    batch = train_processor.collate_training([sample], [train_processor.preprocess_image(test_image())])
    batch = {k: v.to(device) for k, v in batch.items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.learning_rate)
    losses = []

    def step():
        with torch.autocast(device_type=device, dtype=dtype, enabled=device == "cuda"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))

    step_s = timed(step, device, repeats=2)
    n_trainable = sum(p.numel() for p in trainable)
    element = trainable[0].element_size()
    emit(dict(section="train", llm=llm, variant=name, stage=stage, batch=1, tokens=batch["input_ids"].shape[1],
              trainable_parameters=n_trainable, step_s=step_s, loss_finite=all(math.isfinite(x) for x in losses),
              peak_gib=peak_memory(device),
              estimate_gib=(parameter_bytes(model) + 3 * n_trainable * element) / GIB))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=("env", "generate", "train"))
    parser.add_argument("--llm", choices=PAPER_LLMS, default="qwen2-7b")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset (CPU smoke test of this script)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES), metavar="N",
                        help="generate: the batch sizes measured (default: %(default)s)")
    parser.add_argument("--no-batching-check", dest="batching_check", action="store_false",
                        help="generate: skip the greedy answers at batch 1 vs 8")
    parser.add_argument("--hf-llava", action="store_true",
                        help="generate: also time transformers' LlavaForConditionalGeneration with the baseline's weights")
    args = parser.parse_args(argv)
    keep_stdout_for_json()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("real_width_gpu: no CUDA device visible to torch; run on a GPU machine (or --device cpu --tiny)",
              file=sys.stderr)
        return 3
    dtype = torch.bfloat16
    if args.section == "env":
        import transformers

        emit(dict(section="env", torch=torch.__version__, transformers=transformers.__version__,
                  device=torch.cuda.get_device_name() if args.device == "cuda" else args.device,
                  memory_gib=torch.cuda.get_device_properties(0).total_memory / GIB if args.device == "cuda" else None))
    elif args.section == "generate":
        generate_section(args.llm, args.device, dtype, args.tiny, args.batch_sizes, args.batching_check,
                         args.hf_llava)
    else:
        train_section(args.llm, args.stage, args.device, dtype, args.tiny)
    return 0


if __name__ == "__main__":
    sys.exit(main())
