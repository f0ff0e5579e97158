"""The real-width tier: TG-LLaVA at the presets' real widths, on CPU, random weights, no downloads.

For each paper LLM (Vicuna-13B, Llama-3-8B, Qwen2-7B) one model is built per module (the
``real`` fixture) the way a researcher's first run starts: a random CLIP ViT-L/14-336
``CLIPModel`` (real vision and text towers, the real CLIP BPE) and a random LLM at the real width,
heads, KV heads and vocabulary but one decoder layer (``text_config.num_hidden_layers=1``), saved
in HF format, assembled by ``tg-llava-eval create --vision DIR --llm DIR`` with real TG-FOM (576
queries) and TG-DP (2304 crop positions -> 64 latents). The LLM tokenizer is Qwen2's real vocabulary
(``tests/real_vocabularies.py``) for Qwen2 and the one the tests build locally for the template (its
real special tokens) for the other two (``llm_tokenizer``); the guide tokenizer is the full CLIP BPE.

Cases, in order (each prints its peak RSS next to an analytic estimate, see ``memory.py``):

* ``create``: the assembled checkpoint holds the parts' weights, at the preset's sizes;
* ``generate_fp32``: the engine loads it and generates 2 tokens for one image and a long question:
  640 visual tokens (576 projected + 64 TG-DP) reach the LLM, the logits are finite, the guide is
  cut at 77 CLIP tokens with its EOS kept;
* ``baseline_576``: the same weights with both TG switches off (LLaVA-1.5): 576 visual tokens;
* ``round_trip``: save -> load in sharded safetensors (bf16, the dtype checkpoints ship in),
  every tensor identical, and the logits of the text prompt;
* ``official_convert``: an official-layout checkpoint at the real shapes (official key table at
  H = 3584 / 4096 / 5120, derived from the H = 1024 table, ``official_layout.py``) -> ``convert``
  -> strict load: nothing missing or unexpected, the 22 never-computed keys dropped and reported;
* ``stage1_step``: one ``run_stage`` step of ``pretrain`` (batch 1; the recipe's trainable groups
  projector, TG-FOM, TG-DP): loss finite, the frozen groups bit-identical, the trainable ones changed;
* ``stage2_step`` (Vicuna-13B width only, ~0.8 B trainable parameters: Adam's fp32 state for a
  1-layer LLM at Llama-3 or Qwen2 width would be ~20 GB): one ``finetune`` step from stage 1's
  output, the LLM trainable too;
* ``generate_bf16`` (Vicuna-13B only): the engine in bfloat16.

Everything else runs in float32 (``--bf16 False`` overrides the recipe's bf16 for the training
steps). Why the bf16 cases are where they are, the measured wall time and the per-case memory:
docs/performance.md, "Real-width tier".
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from tests.real_vocabularies import real_vocabulary_tokenizer
from tg_llava_eval.checkpoints.converting import convert_checkpoint, map_official_key
from tg_llava_eval.cli import main as cli_main
from tg_llava_eval.inference import GenerationRequest, TGLlavaEngine
from tg_llava_eval.modeling import TGLlavaConfig, TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor, build_llm_tokenizer
from tg_llava_eval.training.trainer import StageRun, run_stage
from tg_llava_eval.variants import PAPER_LLMS, get_variant

from .conftest import record_memory
from .memory import (
    GIB,
    Estimate,
    PeakRSS,
    count_parameters,
    fusion_activation_bytes,
    llm_activation_bytes,
    parameter_bytes,
    release_freed_memory,
    vision_activation_bytes,
)
from .official_layout import official_adapter_shapes, write_official_checkpoint

pytestmark = pytest.mark.real

#: The one decoder layer of every real-width LLM here (``--override`` of ``create``).
ONE_LAYER = {"text_config": {"num_hidden_layers": 1}}
ONE_LAYER_FLAG = "text_config.num_hidden_layers=1"
#: Where the costlier cases run: stage 2 fits in memory at the Vicuna-13B width (LLM 0.65 B + TG
#: 0.13 B trainable parameters); bf16 generation once.
STAGE2_LLM = BF16_LLM = "vicuna-13b"
#: Templates whose real vocabulary the tier's LLM gets (``llm_tokenizer``).
REAL_VOCABULARY_IN_TIER = ("qwen_2",)
NEW_TOKENS = 2
FP32, BF16 = 4, 2  # bytes per element
#: Shard size of the round trip (several shards at every width) and of the official layout.
SHARD_SIZE = "1GB"
SHARD_BYTES = GIB
#: A question of > 77 CLIP tokens: the guide must be cut at 77 with its EOS kept.
LONG_QUESTION = (
    "Look carefully at every region of this picture, from the top left corner to the bottom right "
    "corner, and describe the colours, the gradients, the textures, the noise, any shapes or objects "
    "that you can recognise, how bright or dark each part is, whether anything is written anywhere, "
    "what the light source might be, and finally explain in a few words what kind of image this is "
    "and why someone would have made it for a test of a multimodal model at its real width"
)
CAPTION = "A colourful gradient with fine noise across the whole frame."
PRETRAIN_PROMPT = "<image>\nRender a clear and concise summary of the photo."
TRAINING_FLAGS = (
    "--max_steps", "1", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1",
    # One step: the recipe's warmup ratio would make its only learning rate 0.
    "--warmup_steps", "0", "--save_strategy", "no", "--bf16", "False", "--dataloader_num_workers", "0",
    "--seed", "0", "--disable_tqdm", "True",
)
#: Upper bound of a training row's text tokens (template + prompt + caption) in the estimate.
TRAINING_TEXT_TOKENS = 96
FROZEN_PREFIXES = ("vision_tower.", "guide_tower.")
ADAPTER_PREFIXES = ("multi_modal_projector.", "text_guided_mask.", "detail_perceiver.")
LLM_PREFIX = "language_model."


@dataclass
class Built:
    """One LLM's parts and assembled checkpoint (module-scoped)."""

    llm: str
    variant: str
    checkpoint: Path
    llm_dir: Path
    scratch: Path
    create_peak: PeakRSS
    create_status: int

    @property
    def config(self) -> TGLlavaConfig:
        return TGLlavaConfig.from_pretrained(self.checkpoint)


def file_bytes(folder: Path) -> int:
    """Bytes of the safetensors files of a folder."""
    return sum(path.stat().st_size for path in Path(folder).glob("*.safetensors"))


def meta_parameter_count(config: TGLlavaConfig) -> int:
    with torch.device("meta"):
        return count_parameters(TGLlavaForConditionalGeneration(config))


def llm_tokenizer(template: str):
    """The LLM tokenizer of the tier: the real vocabulary where one fits the preset's embedding
    (Qwen2: 151 647 tokens with ``<image>`` in 152 064 rows, ``tests/real_vocabularies.py``), else
    the one built for the template (Llama-3's real 128 256 + ``<image>`` would make ``create`` grow
    the preset's 128 256 rows; no package ships Vicuna's SentencePiece model)."""
    if template in REAL_VOCABULARY_IN_TIER:
        return real_vocabulary_tokenizer(template)
    return build_llm_tokenizer(template)


@pytest.fixture(scope="module", params=PAPER_LLMS)
def real(request, real_dir, clip_dir, runtime_rss) -> Built:
    """The LLM part (1 layer, real width, bf16 as LLMs ship) and the checkpoint ``create`` assembles."""
    from transformers import AutoModelForCausalLM

    llm = request.param
    variant = get_variant(f"tg-llava-{llm}")
    scratch = real_dir / llm
    llm_dir, checkpoint = scratch / "llm", scratch / "tg-llava"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        language_model = AutoModelForCausalLM.from_config(variant.config(**ONE_LAYER).text_config, dtype=torch.bfloat16)
    language_model.save_pretrained(llm_dir)
    llm_tokenizer(variant.template).save_pretrained(llm_dir)
    del language_model
    release_freed_memory()
    with PeakRSS() as peak:
        status = cli_main(["create", "--variant", variant.name, "--vision", str(clip_dir), "--llm", str(llm_dir),
                           "-o", str(checkpoint), "--override", ONE_LAYER_FLAG])
    yield Built(llm, variant.name, checkpoint, llm_dir, scratch, peak, status)
    shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def capture(model):
    """Record what each forward call of ``model`` passes to the LLM (hooks; nothing replaced)."""
    seen = SimpleNamespace(calls=[], guide_ids=[], projected=[], detail=[])

    def on_model(module, args, kwargs):
        seen.calls.append({key: kwargs.get(key) for key in ("input_ids", "patch_features", "crop_features")})

    def on_llm_input(module, args, kwargs):
        seen.calls[-1]["inputs_embeds"] = kwargs["inputs_embeds"].detach()

    def on_llm_output(module, args, kwargs, output):
        seen.calls[-1]["logits"] = output.logits.detach()

    handles = [
        model.register_forward_pre_hook(on_model, with_kwargs=True),
        model.language_model.register_forward_pre_hook(on_llm_input, with_kwargs=True),
        model.language_model.register_forward_hook(on_llm_output, with_kwargs=True),
        model.guide_tower.register_forward_pre_hook(
            lambda m, a, k: seen.guide_ids.append(k["input_ids"]), with_kwargs=True),
        model.multi_modal_projector.register_forward_hook(lambda m, a, o: seen.projected.append(o.detach())),
    ]
    if model.detail_perceiver is not None:
        handles.append(model.detail_perceiver.register_forward_hook(lambda m, a, o: seen.detail.append(o.detach())))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def check_prefill(seen, config: TGLlavaConfig, *, visual_tokens: int) -> dict:
    """The prefill call: ``visual_tokens`` image positions, filled with exactly the fused tokens."""
    assert len(seen.calls) == NEW_TOKENS, "one LLM call per new token (prefill + decode steps)"
    prefill = seen.calls[0]
    is_image = prefill["input_ids"][0] == config.image_token_id
    assert int(is_image.sum()) == visual_tokens
    fused = torch.cat([*seen.projected, *seen.detail], dim=1)[0]
    assert fused.shape == (visual_tokens, config.text_config.hidden_size)
    assert torch.equal(prefill["inputs_embeds"][0][is_image], fused.to(prefill["inputs_embeds"].dtype))
    for call in seen.calls:
        assert torch.isfinite(call["logits"]).all()
    for later in seen.calls[1:]:
        assert later["input_ids"].shape[1] == 1 and later["patch_features"] is None  # KV cache, no image again
    return prefill


def inference_estimate(runtime: int, model, config, *, images: int, tokens: int, element: int) -> Estimate:
    return (Estimate().add("runtime", runtime).add("weights", parameter_bytes(model))
            .add("vision", vision_activation_bytes(config, images, element))
            .add("fusion", fusion_activation_bytes(config, element))
            .add("llm", llm_activation_bytes(config, tokens, 1, element)))


# ------------------------------------------------------------------------------------- create
def test_create_assembles_real_width_parts(real, clip_dir, runtime_rss):
    assert real.create_status == 0
    config = real.config
    preset = get_variant(real.variant).config()
    assert config.text_config.num_hidden_layers == 1
    for name in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "vocab_size"):
        assert getattr(config.text_config, name) == getattr(preset.text_config, name), name
    assert (config.num_patches, config.num_crop_positions, config.num_detail_tokens) == (576, 2304, 64)
    assert config.num_image_tokens == 640 and config.guide_max_length == 77
    # The parts' weights, as loaded: the LLM (bf16 file) exactly, the towers exactly.
    with safe_open(str(real.checkpoint / "model.safetensors"), "pt") as ours, \
            safe_open(str(real.llm_dir / "model.safetensors"), "pt") as part, \
            safe_open(str(clip_dir / "model.safetensors"), "pt") as clip:
        for key in ("model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight", "lm_head.weight"):
            assert torch.equal(ours.get_tensor(LLM_PREFIX + key), part.get_tensor(key).float()), key
        for key in ("vision_model.encoder.layers.23.mlp.fc2.weight", "text_model.final_layer_norm.weight"):
            tower = "vision_tower." if key.startswith("vision") else "guide_tower."
            assert torch.equal(ours.get_tensor(tower + key.split(".", 1)[1]), clip.get_tensor(key)), key
    # create holds the new model (fp32) and the parts' state dicts it reads.
    estimate = (Estimate().add("runtime", runtime_rss).add("model", meta_parameter_count(config) * FP32)
                .add("parts read", file_bytes(clip_dir) + file_bytes(real.llm_dir)))
    record_memory("create", real.llm, real.create_peak, estimate)


# ----------------------------------------------------------------------------------- generate
def test_generate_fp32_640_visual_tokens(real, test_image, runtime_rss):
    with PeakRSS() as peak:
        engine = TGLlavaEngine.from_pretrained(real.checkpoint, dtype="float32", device="cpu")
        with capture(engine.model) as seen:
            [result] = engine.generate([GenerationRequest(LONG_QUESTION, images=[test_image], max_new_tokens=NEW_TOKENS)])
    assert result.error is None, result.error
    config = engine.model.config
    prefill = check_prefill(seen, config, visual_tokens=640)
    # The guide: cut at the tower's 77 positions, <|startoftext|> first and <|endoftext|> kept last.
    guide = engine.processor.guide_tokenizer
    assert len(guide(LONG_QUESTION)["input_ids"]) > config.guide_max_length
    [guide_ids] = seen.guide_ids
    assert guide_ids.shape == (1, 77)
    assert guide_ids[0, 0] == guide.bos_token_id and guide_ids[0, -1] == guide.eos_token_id
    record_memory("generate_fp32", real.llm, peak, inference_estimate(
        runtime_rss, engine.model, config, images=1 + config.num_crops, tokens=prefill["input_ids"].shape[1],
        element=FP32))


def test_baseline_576_visual_tokens(real, test_image, runtime_rss):
    source = real.config
    baseline = get_variant(f"llava-1.5-{real.llm}")
    config = TGLlavaConfig.from_dict({**source.to_dict(), "use_text_guided_mask": False,
                                      "use_detail_perceiver": False, "variant": baseline.name})
    processor = TGLlavaProcessor.from_pretrained(real.checkpoint)
    with PeakRSS() as peak:
        # The TG weights of the checkpoint are left unused (the switches are off).
        model = TGLlavaForConditionalGeneration.from_pretrained(real.checkpoint, config=config, dtype=torch.float32)
        engine = TGLlavaEngine(model, TGLlavaProcessor.from_config(config, processor.tokenizer, processor.guide_tokenizer))
        with capture(model) as seen:
            [result] = engine.generate([GenerationRequest(LONG_QUESTION, images=[test_image], max_new_tokens=NEW_TOKENS)])
    assert result.error is None, result.error
    prefill = check_prefill(seen, config, visual_tokens=576)
    assert not seen.guide_ids and prefill["crop_features"] is None  # no guide, no crops
    record_memory("baseline_576", real.llm, peak, inference_estimate(
        runtime_rss, model, config, images=1, tokens=prefill["input_ids"].shape[1], element=FP32))


# ---------------------------------------------------------------------------------- round trip
def test_round_trip_sharded_safetensors(real, runtime_rss):
    # Every tensor is compared exactly below; the logits check runs the LLM on the text prompt only:
    # with the 640 image positions a bf16 forward costs ~15 s per model on a CPU without
    # AVX512-BF16 (its weights, TG's included, are already compared one by one).
    processor = TGLlavaProcessor.from_pretrained(real.checkpoint)
    prompt = processor.apply_template(LONG_QUESTION, has_image=False)
    inputs = {"input_ids": processor.tokenizer([prompt], return_tensors="pt")["input_ids"]}
    folder = real.scratch / "round-trip"
    with PeakRSS() as peak:
        model = TGLlavaForConditionalGeneration.from_pretrained(real.checkpoint, dtype=torch.bfloat16).eval()
        model.save_pretrained(folder, max_shard_size=SHARD_SIZE)
        loaded = TGLlavaForConditionalGeneration.from_pretrained(folder).eval()
        with torch.no_grad():
            before = model(**inputs).logits
            after = loaded(**inputs).logits
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1, "the round trip must go through several shards"
    assert loaded.dtype == torch.bfloat16
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert torch.isfinite(before).all() and torch.equal(before, after)
    tokens = inputs["input_ids"].shape[1]
    estimate = (Estimate().add("runtime", runtime_rss).add("weights x2", 2 * parameter_bytes(model))
                .add("fp32 file read", file_bytes(real.checkpoint))
                .add("llm", 2 * llm_activation_bytes(model.config, tokens, tokens, BF16)))
    del model, loaded, before, after, original
    shutil.rmtree(folder)
    record_memory("round_trip_bf16", real.llm, peak, estimate)


# ------------------------------------------------------------------------- official -> convert
def test_official_layout_converts_strictly(real, runtime_rss):
    from tests.unit.modeling.official_fixture import official_key_table

    config = real.config
    hidden = config.text_config.hidden_size
    shapes = {key: shape for key, shape, _ in official_adapter_shapes(hidden)}
    assert shapes["model.mm_projector.2.weight"] == [hidden, hidden]
    assert shapes["model.mm_patch_encoder.proj.0.weight"] == [hidden, config.perceiver_config.hidden_size]
    assert shapes["model.mm_patch_encoder.position_embedding.weight"][0] == config.num_crop_positions
    assert shapes["model.mm_cross_attn.query_tokens"][1] == config.num_query_tokens
    official, converted = real.scratch / "official", real.scratch / "converted"
    source = TGLlavaForConditionalGeneration.from_pretrained(real.checkpoint, dtype=torch.bfloat16)
    processor = TGLlavaProcessor.from_pretrained(real.checkpoint)
    state = write_official_checkpoint(source, processor.tokenizer, official, dtype=torch.bfloat16, shard_bytes=SHARD_BYTES)
    with PeakRSS() as peak:
        report = convert_checkpoint(official, converted, variant=real.variant, dtype="bfloat16",
                                    config_overrides=ONE_LAYER)
    not_computed = official_key_table()["unused_in_forward"]["not_computed"]
    assert f"dropped {len(not_computed)} unused keys" in report
    for reason in ("Q-Former text embeddings", "Q-Former text-branch FFN", "Q-Former MLM head"):
        assert reason in report
    model, info = TGLlavaForConditionalGeneration.from_pretrained(converted, output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    ours = model.state_dict()
    renamed = set()
    for key, value in state.items():
        target, reason = map_official_key(key)
        if target is None:
            assert key in not_computed, (key, reason)
            continue
        renamed.add(target)
        assert torch.equal(ours[target], value), key
    assert renamed == set(ours), "every weight of the converted model comes from the official file"
    estimate = (Estimate().add("runtime", runtime_rss).add("source model", parameter_bytes(source))
                .add("official read", file_bytes(official)))
    del source, state, model, ours
    shutil.rmtree(official)
    shutil.rmtree(converted)
    record_memory("official_convert", real.llm, peak, estimate)


# ---------------------------------------------------------------------------------- training
def training_rows(real_dir: Path, name: str, prompt: str, answer: str) -> Path:
    path = real_dir / f"{name}.json"
    path.write_text(json.dumps([{"id": f"{name}-0", "image": "image.png", "conversations": [
        {"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]}]))
    return path


def compare_groups(before: Path, after: Path) -> dict[str, dict[str, bool]]:
    """``{prefix: {key: changed}}`` for every tensor of two checkpoints (read one tensor at a time)."""
    def files(folder):  # the model's weights, not stage 1's per-group adapter files
        return sorted(Path(folder).glob("model*.safetensors"))

    changed: dict[str, dict[str, bool]] = {}
    index = {}
    for path in files(before):
        with safe_open(str(path), "pt") as handle:
            index.update({key: path for key in handle.keys()})
    for path in files(after):
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():
                with safe_open(str(index[key]), "pt") as old:
                    group = key.split(".", 1)[0] + "."
                    changed.setdefault(group, {})[key] = not torch.equal(handle.get_tensor(key), old.get_tensor(key))
    return changed


def training_estimate(runtime: int, config, *, trainable: int) -> Estimate:
    """Model (fp32) + gradients and Adam's two moments of the trainable parameters + activations
    (forward kept for backward, about twice the inference activations, full logits) over the
    image tokens and at most :data:`TRAINING_TEXT_TOKENS` text tokens."""
    tokens = config.num_image_tokens + TRAINING_TEXT_TOKENS
    return (Estimate().add("runtime", runtime).add("model", meta_parameter_count(config) * FP32)
            .add("grad+adam", 3 * trainable * FP32)
            .add("vision", vision_activation_bytes(config, 1 + config.num_crops, FP32))
            .add("fusion", 2 * fusion_activation_bytes(config, FP32))
            .add("llm", 2 * llm_activation_bytes(config, tokens, tokens, FP32)))


def run_training(stage: str, real: Built, data: Path, real_dir: Path, output: Path, **kwargs):
    with PeakRSS() as peak:
        report = run_stage(StageRun(stage=stage, variant=real.variant, data_path=data, image_dir=real_dir,
                                    output_dir=output, use_deepspeed=False, training_flags=TRAINING_FLAGS, **kwargs))
    losses = [row["loss"] for row in report["log_history"] if "loss" in row]
    assert losses and all(math.isfinite(loss) for loss in losses), report["log_history"]
    trainable = sum(row["trainable"] for row in report["parameters"] if row["group"] != "total")
    return report, peak, trainable


def test_stage1_step(real, real_dir, test_image, runtime_rss):
    data = training_rows(real_dir, "stage1", PRETRAIN_PROMPT, CAPTION)
    output = real.scratch / "stage1"
    report, peak, trainable = run_training("pretrain", real, data, real_dir, output, model_path=real.checkpoint)
    groups = {row["group"]: row["status"] for row in report["parameters"]}
    assert [g for g, s in groups.items() if s == "trainable"] == ["projector", "text_guided_mask", "detail_perceiver"]
    changed = compare_groups(real.checkpoint, output)
    for prefix in (*FROZEN_PREFIXES, LLM_PREFIX):
        assert not any(changed[prefix].values()), f"{prefix} changed in stage 1"
    for prefix in ADAPTER_PREFIXES:
        assert any(changed[prefix].values()), f"{prefix} did not change in stage 1"
    record_memory("stage1_step", real.llm, peak, training_estimate(runtime_rss, real.config, trainable=trainable))
    if real.llm != STAGE2_LLM:
        shutil.rmtree(output)


def test_stage2_step(real, real_dir, test_image, runtime_rss):
    if real.llm != STAGE2_LLM:
        pytest.skip(f"stage 2 runs at the {STAGE2_LLM} width only (Adam state of a 1-layer LLM at this width: ~20 GB)")
    stage1 = real.scratch / "stage1"
    if not stage1.is_dir():
        pytest.skip("needs stage1_step's output")
    data = training_rows(real_dir, "stage2", "<image>\nWhat colours does the image show?", CAPTION)
    output = real.scratch / "stage2"
    report, peak, trainable = run_training("finetune", real, data, real_dir, output, stage1_dir=stage1)
    groups = {row["group"]: row["status"] for row in report["parameters"]}
    assert [g for g, s in groups.items() if s == "trainable"] == ["projector", "text_guided_mask", "detail_perceiver", "llm"]
    changed = compare_groups(stage1, output)
    for prefix in FROZEN_PREFIXES:
        assert not any(changed[prefix].values()), f"{prefix} changed in stage 2"
    for prefix in (*ADAPTER_PREFIXES, LLM_PREFIX):
        assert any(changed[prefix].values()), f"{prefix} did not change in stage 2"
    record_memory("stage2_step", real.llm, peak, training_estimate(runtime_rss, real.config, trainable=trainable))
    shutil.rmtree(output)
    shutil.rmtree(stage1)


def test_generate_bf16(real, test_image, runtime_rss):
    if real.llm != BF16_LLM:
        pytest.skip(f"bf16 generation runs for {BF16_LLM} only")
    with PeakRSS() as peak:
        engine = TGLlavaEngine.from_pretrained(real.checkpoint, dtype="bfloat16", device="cpu")
        with capture(engine.model) as seen:
            [result] = engine.generate([GenerationRequest(LONG_QUESTION, images=[test_image], max_new_tokens=NEW_TOKENS)])
    assert result.error is None, result.error
    assert engine.model.dtype == torch.bfloat16
    prefill = check_prefill(seen, engine.model.config, visual_tokens=640)
    estimate = inference_estimate(runtime_rss, engine.model, engine.model.config, images=5,
                                  tokens=prefill["input_ids"].shape[1], element=BF16)
    record_memory("generate_bf16", real.llm, peak, estimate.add("fp32 file read", file_bytes(real.checkpoint)))
