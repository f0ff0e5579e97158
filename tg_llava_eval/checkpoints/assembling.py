"""Assembling a stage-1 start from pretrained parts: CLIP or SigLIP towers and an LLM, fresh TG modules.

:func:`assemble_model` is what :meth:`TGLlavaForConditionalGeneration.from_components` runs: it
resolves the parts (local directories or hub repo ids), reads their configs and checks them against
the preset, adds ``<image>`` to the LLM tokenizer when missing, builds the model and loads the
pretrained weights strictly (:func:`~.loading.load_strict`). :func:`assemble_checkpoint` writes the
result with its processor as a checkpoint directory (``tg-llava-eval create --vision/--llm``).
Rationale (strictness, the ``<image>`` row, padding the vocabulary): docs/training.md and
docs/architecture.md, "Checkpoints".

Tower checkpoints (:data:`DUAL_TOWER_CONFIGS`, :data:`VISION_TOWER_CONFIGS`,
:data:`GUIDE_TOWER_CONFIGS`): a full ``CLIPModel`` / ``SiglipModel`` (both towers, under
``vision_model.`` / ``text_model.``) or a single tower. The part's ``model_type`` must be the
preset's (a CLIP part for a SigLIP preset is refused naming ``vision_config.model_type``). SigLIP's
vision attention-pooling head (``head.*``) is never read by TG-LLaVA (it uses hidden states): the
presets build the tower without it (``vision_use_head=False``) and its weights are dropped with a
logged count. SigLIP's text ``head`` is kept: it is part of ``pooler_output``, which TG-FOM reads.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AddedToken,
    AutoConfig,
    AutoTokenizer,
    CLIPConfig,
    CLIPTextConfig,
    CLIPVisionConfig,
    SiglipConfig,
    SiglipTextConfig,
    SiglipVisionConfig,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from ..errors import TGLlavaCheckpointError, TGLlavaConfigError
from ..modeling import TGLlavaForConditionalGeneration
from ..processing import TGLlavaProcessor
from ..variants import get_variant
from .creating import build_tokenizers, padded_vocab_size, write_checkpoint
from .loading import load_strict
from .reading import has_tokenizer_files, read_state_dict

logger = logging.getLogger(__name__)

#: Keys of a full ``CLIPModel`` checkpoint that TG-LLaVA never computes: the contrastive heads.
#: The vision side reads hidden states and the guide the un-projected ``pooler_output``.
CLIP_CONTRASTIVE_KEYS = ("visual_projection.weight", "text_projection.weight", "logit_scale")
#: The same of a full ``SiglipModel`` checkpoint (its sigmoid loss's temperature and bias).
SIGLIP_CONTRASTIVE_KEYS = ("logit_scale", "logit_bias")
_CONTRASTIVE_KEYS = frozenset(CLIP_CONTRASTIVE_KEYS + SIGLIP_CONTRASTIVE_KEYS)
#: Checkpoints holding both towers (``.vision_config`` and ``.text_config``), and single towers.
DUAL_TOWER_CONFIGS: tuple[type, ...] = (CLIPConfig, SiglipConfig)
VISION_TOWER_CONFIGS: tuple[type, ...] = (CLIPVisionConfig, SiglipVisionConfig)
GUIDE_TOWER_CONFIGS: tuple[type, ...] = (CLIPTextConfig, SiglipTextConfig)
#: Prefix of SigLIP's vision attention-pooling head inside the tower; dropped when the preset builds
#: the tower without it (``vision_use_head=False``: TG-LLaVA reads hidden states only).
VISION_HEAD_PREFIX = "head."
#: Where each tower's weights sit in a ``CLIPModel`` checkpoint (its attribute names there).
CLIP_TOWER_PREFIXES = {"vision_tower": "vision_model.", "guide_tower": "text_model."}
#: Sizes of each part that a preset declares and :func:`assemble_model` checks against the loaded
#: part (vocabulary sizes are left out: ``<image>`` may add a row).
ARCHITECTURE_FIELDS = {
    "vision_config": ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                      "num_attention_heads", "image_size", "patch_size"),
    "guide_config": ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "max_position_embeddings"),
    "text_config": ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads"),
}


def _component_dir(source: str | os.PathLike, role: str) -> Path:
    """Resolve a local directory or a hub repo id (cached or downloadable) to a local directory.

    Raises:
        TGLlavaCheckpointError: Neither a directory nor a resolvable repo id (names ``role``).
    """
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise TGLlavaCheckpointError(f"{role}={str(source)!r} is a file; expected a checkpoint directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(source)))
    except Exception as exc:  # offline, unknown repo, malformed id: all mean "not found"
        raise TGLlavaCheckpointError(
            f"{role}={str(source)!r} is neither a local directory nor a reachable hub repo ({type(exc).__name__})"
        ) from exc


def _component_config(directory: Path, role: str, expected: tuple[type, ...], what: str):
    """Read ``directory``'s config and check that it is the kind of checkpoint ``role`` needs."""
    if not (directory / "config.json").is_file():
        raise TGLlavaCheckpointError(f"{role}={str(directory)!r} has no config.json; expected {what}")
    config = AutoConfig.from_pretrained(directory)
    if expected and not isinstance(config, expected):
        raise TGLlavaCheckpointError(
            f"{role}={str(directory)!r} holds a {config.model_type!r} checkpoint "
            f"({type(config).__name__}); expected {what}"
        )
    if not expected and type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise TGLlavaCheckpointError(
            f"{role}={str(directory)!r} holds a {config.model_type!r} checkpoint "
            f"({type(config).__name__}), which AutoModelForCausalLM cannot build; expected {what}"
        )
    return config


def _image_token_id(tokenizer, image_token: str) -> int:
    """Id of ``image_token``; added to ``tokenizer`` as one special token when missing (llava-hf)."""
    if image_token not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(image_token, special=True, normalized=False)], special_tokens=True)
        logger.info("added %s to the LLM tokenizer as id %d", image_token, tokenizer.convert_tokens_to_ids(image_token))
    return tokenizer.convert_tokens_to_ids(image_token)


def _check_against_preset(name: str, part, reference, source: Path, variant: str) -> None:
    """Raise when a loaded part's architecture differs from what the preset declares."""
    for field_name in ARCHITECTURE_FIELDS[name]:
        got, want = getattr(part, field_name, None), getattr(reference, field_name, None)
        if got != want:
            raise TGLlavaConfigError(
                f"variant {variant!r} declares {name}.{field_name}={want!r} but {str(source)!r} has "
                f"{got!r}: pick the preset of these parts"
            )


def _clip_tower_state(
    state: dict[str, torch.Tensor], prefix: str, *, source: Path, role: str
) -> dict[str, torch.Tensor]:
    """The weights of one CLIP or SigLIP tower, keyed as the tower's own ``state_dict``.

    A ``CLIPModel``/``SiglipModel`` file (and a single-tower file written before transformers v5)
    holds a tower under its :data:`CLIP_TOWER_PREFIXES` entry (the same names in both families); a
    v5 single-tower file holds it at the top level. The contrastive heads and the other tower are
    left out.

    Raises:
        TGLlavaCheckpointError: Keys that belong to neither tower nor the contrastive heads.
    """
    if any(key.startswith(prefix) for key in state):
        towers = tuple(CLIP_TOWER_PREFIXES.values())
        stray = sorted(key for key in state if not key.startswith(towers) and key not in _CONTRASTIVE_KEYS)
        if stray:
            raise TGLlavaCheckpointError(
                f"{role}={str(source)!r} has keys outside the CLIP towers: {stray[:10]} ({len(stray)})"
            )
        return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return {key: value for key, value in state.items() if key not in _CONTRASTIVE_KEYS}


@torch.no_grad()
def assemble_model(
    vision: str | os.PathLike,
    llm: str | os.PathLike,
    *,
    variant: Any,
    guide: str | os.PathLike | None = None,
    tokenizer: Any = None,
    guide_tokenizer: Any = None,
    dtype: torch.dtype | str | None = None,
    seed: int = 0,
    model_class: type[TGLlavaForConditionalGeneration] | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> TGLlavaForConditionalGeneration:
    """Assemble a stage-1 start: pretrained CLIP towers and LLM, fresh TG modules and projector.

    The config is the preset's (switches, Q-Former and perceiver sizes, template) with the
    sub-configs read from the parts: ``vision_config`` and ``guide_config`` from the CLIP
    checkpoint(s), ``text_config`` from the LLM. The parts' architecture must match what the
    preset declares (:data:`ARCHITECTURE_FIELDS`). The projector, TG-FOM and TG-DP get the
    model's own initialisation under ``seed`` (TG-FOM's output layer zero, so the model starts
    as LLaVA-1.5 + TG-DP); the towers and the LLM get the pretrained weights, loaded strictly.
    If ``<image>`` has no LLM embedding row, the embedding and LM head grow to the next multiple
    of :data:`~.creating.VOCAB_PAD_MULTIPLE` with new rows at the mean pretrained row (llava-hf
    convention). The towers are frozen.

    Args:
        vision: Directory (or hub repo id) of a ``CLIPModel``/``SiglipModel`` or a
            ``CLIPVisionModel``/``SiglipVisionModel`` checkpoint.
        llm: Directory (or hub repo id) of a causal LM ``AutoModelForCausalLM`` can build.
        variant: Preset name (``tg_llava_eval.variants``) or a ``Variant``.
        guide: ``CLIPModel``/``SiglipModel`` or ``CLIPTextModel``/``SiglipTextModel`` checkpoint of
            the guide tower; default: the text tower of ``vision`` (which must then hold both).
        tokenizer: LLM tokenizer object or directory; default: ``llm``'s. ``<image>`` is added
            to the object in place when missing, so pass the same object to the processor.
        guide_tokenizer: CLIP tokenizer object or directory; default: the CLIP directory's when
            it has one. Its bos/eos/pad ids go into ``guide_config``; without one the CLIP
            config's ids are kept.
        dtype: Dtype of the returned model (``torch.bfloat16`` or ``"bfloat16"``); default fp32.
        seed: Seed of the TG modules' and projector's initialisation (the global RNG is restored).
        model_class: The class to build (``from_components`` passes its own ``cls``); default
            :class:`TGLlavaForConditionalGeneration`.
        config_overrides: ``TGLlavaConfig`` fields applied to the preset before the parts are
            checked against it, as :meth:`~tg_llava_eval.variants.Variant.config` takes them
            (sub-config dicts merged): e.g. ``{"text_config": {"num_hidden_layers": 1}}`` for a
            depth-reduced LLM at the real width (tests/real). Sub-config entries only change what
            the parts must match (the parts' own configs are used); top-level fields also enter
            the model's config.

    Returns:
        The model in eval mode (as ``from_pretrained`` returns it).

    Raises:
        TGLlavaCheckpointError: A missing directory, a wrong kind of checkpoint, missing or
            unexpected weights, a shape mismatch (the message names the argument/directory).
        TGLlavaConfigError: A part whose sizes differ from the preset, or a guide tokenizer
            larger than the guide tower's vocabulary.
    """
    preset = get_variant(variant) if isinstance(variant, str) else variant
    overrides = copy.deepcopy(dict(config_overrides or {}))
    reference = preset.config(**copy.deepcopy(overrides))
    top_level_overrides = {key: value for key, value in overrides.items() if key not in ARCHITECTURE_FIELDS}
    vision_dir = _component_dir(vision, "vision")
    llm_dir = _component_dir(llm, "llm")
    guide_dir = vision_dir if guide is None else _component_dir(guide, "guide")

    vision_kinds = "a CLIP checkpoint (CLIPModel or CLIPVisionModel) or a SigLIP one (SiglipModel or SiglipVisionModel)"
    vision_part = _component_config(vision_dir, "vision", DUAL_TOWER_CONFIGS + VISION_TOWER_CONFIGS, vision_kinds)
    guide_part = (
        vision_part if guide is None
        else _component_config(guide_dir, "guide", DUAL_TOWER_CONFIGS + GUIDE_TOWER_CONFIGS,
                               "a CLIP checkpoint (CLIPModel or CLIPTextModel) or a SigLIP one (SiglipModel or SiglipTextModel)")
    )
    if isinstance(guide_part, VISION_TOWER_CONFIGS):
        family = "SigLIP" if isinstance(guide_part, SiglipVisionConfig) else "CLIP"
        raise TGLlavaCheckpointError(
            f"vision={str(vision_dir)!r} holds only a {family} vision tower: pass guide=<CLIP or SigLIP "
            "checkpoint with the text tower> (the guide tower reads the instruction)"
        )
    text_part = _component_config(llm_dir, "llm", (), "a causal LM checkpoint (e.g. Llama, Qwen2)")
    vision_config = vision_part.vision_config if isinstance(vision_part, DUAL_TOWER_CONFIGS) else vision_part
    guide_config = guide_part.text_config if isinstance(guide_part, DUAL_TOWER_CONFIGS) else guide_part
    for name, part, source in (("vision_config", vision_config, vision_dir),
                               ("guide_config", guide_config, guide_dir),
                               ("text_config", text_part, llm_dir)):
        _check_against_preset(name, part, getattr(reference, name), source, preset.name)

    # Tokenizers: only their special ids and sizes enter the config.
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(llm_dir if tokenizer is None else tokenizer)
    if guide_tokenizer is None and has_tokenizer_files(guide_dir):
        guide_tokenizer = guide_dir
    if isinstance(guide_tokenizer, (str, os.PathLike)):
        guide_tokenizer = AutoTokenizer.from_pretrained(guide_tokenizer)
    guide_dict = guide_config.to_dict()
    if guide_tokenizer is not None:
        if len(guide_tokenizer) > guide_config.vocab_size:
            raise TGLlavaConfigError(
                f"the guide tokenizer has {len(guide_tokenizer)} tokens but guide_config.vocab_size "
                f"of {str(guide_dir)!r} is {guide_config.vocab_size}"
            )
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            guide_dict[key] = getattr(guide_tokenizer, key)
    image_token_id = _image_token_id(tokenizer, reference.image_token)
    text_dict = text_part.to_dict()
    needed_rows = max(len(tokenizer), image_token_id + 1)
    if needed_rows > text_part.vocab_size:
        text_dict["vocab_size"] = padded_vocab_size(needed_rows)
        logger.info("LLM embedding grows from %d to %d rows for %s",
                    text_part.vocab_size, text_dict["vocab_size"], reference.image_token)
    # A part's recorded dtype would make from_config build that tower in it (a bf16 LLM beside
    # fp32 towers): everything is built in fp32 and cast to `dtype` once at the end.
    vision_dict = vision_config.to_dict()
    # SigLIP's pooling head: built as the preset says (without it: never read), see VISION_HEAD_PREFIX.
    drop_vision_head = False
    if hasattr(reference.vision_config, "vision_use_head"):
        drop_vision_head = bool(vision_dict.get("vision_use_head")) and not reference.vision_config.vision_use_head
        vision_dict["vision_use_head"] = reference.vision_config.vision_use_head
    for sub_config in (vision_dict, guide_dict, text_dict):
        sub_config.pop("dtype", None)
        sub_config.pop("torch_dtype", None)
    config = preset.config(
        vision_config=vision_dict, guide_config=guide_dict, text_config=text_dict, image_token_id=image_token_id,
        **top_level_overrides,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (model_class or TGLlavaForConditionalGeneration)(config)

    # One CLIPModel file feeds both towers; a separate guide checkpoint's vision tower is unused.
    vision_state = read_state_dict(vision_dir)
    guide_state = vision_state if guide is None else read_state_dict(guide_dir)
    guide_role = "vision" if guide is None else "guide"
    for tower, state, source, role in (("vision_tower", vision_state, vision_dir, "vision"),
                                       ("guide_tower", guide_state, guide_dir, guide_role)):
        tower_state = _clip_tower_state(state, CLIP_TOWER_PREFIXES[tower], source=source, role=role)
        if tower == "vision_tower" and drop_vision_head:
            head = [key for key in tower_state if key.startswith(VISION_HEAD_PREFIX)]
            for key in head:
                del tower_state[key]
            logger.info("dropped %d weights of the SigLIP vision pooling head from %s: TG-LLaVA reads hidden "
                        "states only (vision_use_head=False)", len(head), source)
        load_strict(getattr(model, tower), tower_state, source=source, role=role)
    language_model = model.language_model
    load_strict(language_model, read_state_dict(llm_dir), source=llm_dir, role="llm",
                ignored_patterns=tuple(language_model._keys_to_ignore_on_load_unexpected or ()))
    if dtype is not None:
        model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    model.freeze_towers()
    logger.info("assembled %s from vision=%s, guide=%s, llm=%s (seed %d)",
                preset.name, vision_dir, guide_dir, llm_dir, seed)
    return model.eval()


def assemble_checkpoint(
    variant: str,
    output_dir: str | Path,
    *,
    vision: str | Path,
    llm: str | Path,
    guide: str | Path | None = None,
    tokenizer: Any = None,
    guide_tokenizer: Any = None,
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write a stage-1 start of ``variant`` assembled from pretrained CLIP and LLM checkpoints.

    The model comes from :func:`assemble_model` (pretrained towers and LLM loaded strictly, TG
    modules and projector freshly initialised under ``seed``); the processor is built from its
    config and the tokenizers, as :func:`~.creating.create_checkpoint` does, so
    ``tg-llava-eval train pretrain --model output_dir`` starts from it.

    Args:
        variant: Preset name; the parts' sizes must match it.
        output_dir: Created if missing.
        vision: ``CLIPModel`` (or ``CLIPVisionModel`` with ``guide``) checkpoint directory.
        llm: Causal-LM checkpoint directory.
        guide: CLIP checkpoint with the text tower, when ``vision`` has none.
        tokenizer: LLM tokenizer object or directory; default: ``llm``'s tokenizer (``<image>`` is
            added when missing).
        guide_tokenizer: CLIP tokenizer object or directory; default: the CLIP directory's
            tokenizer when it has one, else the CLIP BPE built locally
            (:func:`~.creating.build_tokenizers`).
        seed: Seed of the fresh modules.
        config_overrides: See :func:`assemble_model`.

    Returns:
        The checkpoint directory.

    Raises:
        TGLlavaCheckpointError, TGLlavaConfigError: As :func:`assemble_model`.
    """
    preset = get_variant(variant)
    output_dir = Path(output_dir)
    clip_dir = Path(guide if guide is not None else vision)
    if tokenizer is None:
        tokenizer = llm
    if guide_tokenizer is None and has_tokenizer_files(clip_dir):
        guide_tokenizer = clip_dir
    tokenizer, guide_tokenizer = build_tokenizers(preset, tokenizer, guide_tokenizer)
    model = assemble_model(
        vision, llm, variant=preset, guide=guide, tokenizer=tokenizer, guide_tokenizer=guide_tokenizer, seed=seed,
        config_overrides=config_overrides,
    )
    # assemble_model added <image> to `tokenizer` when it lacked it; the processor checks the id.
    processor = TGLlavaProcessor.from_config(model.config, tokenizer, guide_tokenizer)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_checkpoint(model, processor, output_dir)
    logger.info("wrote %s (%s) assembled from vision=%s, llm=%s to %s", preset.name, preset.method, vision, llm, output_dir)
    return output_dir


__all__ = [
    "CLIP_CONTRASTIVE_KEYS", "SIGLIP_CONTRASTIVE_KEYS", "DUAL_TOWER_CONFIGS", "VISION_TOWER_CONFIGS",
    "GUIDE_TOWER_CONFIGS", "VISION_HEAD_PREFIX", "CLIP_TOWER_PREFIXES", "ARCHITECTURE_FIELDS", "assemble_model",
    "assemble_checkpoint",
]
