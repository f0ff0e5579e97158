"""Configuration of TG-LLaVA (Text Guided LLaVA, Yan et al., AAAI 2025).

One composite :class:`TGLlavaConfig` holds five sub-configs, one per tower/module, and the few
switches that turn the model into LLaVA-1.5 or into an ablation:

==================  =========================  ==============================================
sub-config          class                      role
==================  =========================  ==============================================
``vision_config``   ``CLIPVisionConfig`` or    frozen ViT (CLIP ViT-L/14-336 officially; SigLIP
                    ``SiglipVisionConfig``     so400m, the official README's switch)
``guide_config``    ``CLIPTextConfig`` or      frozen text tower reading the instruction (CLIP-L
                    ``SiglipTextConfig``       text officially; SigLIP's text tower)
``text_config``     any causal-LM config       the LLM (Llama / Vicuna / Qwen2 tested)
``qformer_config``  ``Blip2QFormerConfig``     TG-FOM's Q-Former over the pooled guide
``perceiver_config````Idefics2PerceiverConfig``TG-DP's perceiver resampler
==================  =========================  ==============================================

The defaults of the TG modules are the official ones (``AIDC-AI/TG-LLaVA@0009eb8``; the mapping is
in docs/architecture.md): a 2-layer BERT-large-width Q-Former with
cross-attention on every 2nd layer, 576 learnable queries, a depth-2 perceiver with 64 latents,
16 query heads × 96, 4 KV heads, RMSNorm eps 1e-5, and a 2 × 2 crop grid.

Every size that the official code hard-codes (576 queries, 2304 crop positions, the 768/1024 widths,
77 guide tokens) is *derived* here from the sub-configs, and inconsistent combinations raise a
:class:`~tg_llava_eval.errors.TGLlavaConfigError` naming the fields, so that a SigLIP tower or a
different crop grid either works or fails loudly at construction.

Tower conventions (:data:`VISION_TOWERS`, :data:`GUIDE_TOWERS`, keyed by the sub-config's
``model_type``: dispatch by type, never by name) are the facts about a tower family that the model
and the processor read and that its sizes do not say: whether the vision tower prepends a CLS
token, where the pooled text embedding comes from and how wide it is, and how the text tower was
trained to see padding (CLIP: padded to the batch's longest with an attention mask, pooled at the
EOS token; SigLIP: always padded to ``max_length`` = its 64 positions, no attention mask, pooled
at the last position through its ``head``). The official code only knows CLIP; SigLIP support is
beyond it (docs/architecture.md, "SigLIP towers").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.models.blip_2.configuration_blip_2 import Blip2QFormerConfig
from transformers.models.idefics2.configuration_idefics2 import Idefics2PerceiverConfig

from ..conversation import TEMPLATES
from ..errors import TGLlavaConfigError

#: Projector types understood by :class:`~tg_llava_eval.modeling.TGLlavaProjector`.
PROJECTOR_TYPES = ("mlp2x_gelu", "linear")
#: Where TG-DP's high-resolution crops come from (see ``crop_source`` below).
CROP_SOURCES = ("upsampled", "original")
#: How the guide tokens' padding is masked (see ``guide_padding`` below).
GUIDE_PADDING_MODES = ("masked", "official")
#: Which input each perceiver layer attends to, in the official order (layer 0 text, layer 1 crops).
PERCEIVER_CONTEXTS = ("guide", "crops")


@dataclass(frozen=True)
class VisionTowerConvention:
    """What the model must know about a vision-tower family beyond its config's sizes.

    Attributes:
        model_type: The sub-config's ``model_type`` (``clip_vision_model``).
        has_cls_token: The tower prepends a CLS token to the patch tokens (CLIP), which the patch
            features drop; SigLIP has none (its hidden states are the patches only).
        partial_patches: ``image_size`` need not be a multiple of ``patch_size``: the tower's
            ``padding="valid"`` patch convolution drops the remainder and its position table has
            ``(image_size // patch_size)²`` rows (SigLIP so400m: 384 px, patch 14 -> 27 × 27).
            CLIP-L/336 divides exactly and the check is kept strict for it.
        model_class: The transformers class that builds the tower (``AutoModel`` has no entry
            for every family, e.g. not for ``SiglipTextConfig``).
        image_processor_class: The family's own transformers image processor, whose class
            defaults give the mean, std and resampling filter of the processor.
    """

    model_type: str
    has_cls_token: bool
    partial_patches: bool
    model_class: str
    image_processor_class: str


@dataclass(frozen=True)
class GuideTowerConvention:
    """What the model and the processor must know about a guide (text) tower family.

    Attributes:
        model_type: The sub-config's ``model_type`` (``clip_text_model``).
        pooled_width_field: The ``guide_config`` field giving the width of ``pooler_output`` (what
            TG-FOM reads): CLIP's is the un-projected EOS state (``hidden_size``); SigLIP's goes
            through the text model's own ``head`` (``projection_size``).
        pools_at_eos: ``pooler_output`` is read at the EOS token (CLIP), so ``eos_token_id`` must be
            a vocabulary row; SigLIP pools the last position whatever it holds.
        pad_to_max_length: Guides are always padded to the tower's ``max_position_embeddings``
            (SigLIP was trained with ``padding="max_length"``: its pooled last position is then a
            pad); otherwise to the batch's longest guide (CLIP).
        tower_attention_mask: The padding mask is passed to the tower (CLIP); SigLIP's text tower
            was trained without one and sees its padding.
        model_class: The transformers class that builds the tower.
    """

    model_type: str
    pooled_width_field: str
    pools_at_eos: bool
    pad_to_max_length: bool
    tower_attention_mask: bool
    model_class: str


#: Vision towers TG-LLaVA can use, by ``vision_config.model_type``.
VISION_TOWERS: dict[str, VisionTowerConvention] = {
    c.model_type: c
    for c in (
        VisionTowerConvention("clip_vision_model", has_cls_token=True, partial_patches=False,
                              model_class="CLIPVisionModel", image_processor_class="CLIPImageProcessorPil"),
        VisionTowerConvention("siglip_vision_model", has_cls_token=False, partial_patches=True,
                              model_class="SiglipVisionModel", image_processor_class="SiglipImageProcessorPil"),
    )
}
#: Guide towers TG-LLaVA can use, by ``guide_config.model_type``.
GUIDE_TOWERS: dict[str, GuideTowerConvention] = {
    c.model_type: c
    for c in (
        GuideTowerConvention("clip_text_model", pooled_width_field="hidden_size", pools_at_eos=True,
                             pad_to_max_length=False, tower_attention_mask=True, model_class="CLIPTextModel"),
        GuideTowerConvention("siglip_text_model", pooled_width_field="projection_size", pools_at_eos=False,
                             pad_to_max_length=True, tower_attention_mask=False, model_class="SiglipTextModel"),
    )
}

# Official sizes: CLIP ViT-L/14-336 (vision) and its text tower (guide).
_CLIP_L_336_VISION = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
)
_CLIP_L_TEXT = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    vocab_size=49408,
    projection_dim=768,
    hidden_act="quick_gelu",
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
# Official TG-FOM Q-Former: BERT-large widths, 2 layers, cross-attention every 2nd layer.
_OFFICIAL_QFORMER = dict(
    hidden_size=1024,
    num_hidden_layers=2,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    layer_norm_eps=1e-12,
    cross_attention_frequency=2,
)
# Official TG-DP perceiver: the Idefics2 resampler at width 1024, depth 2, 64 latents.
_OFFICIAL_PERCEIVER = dict(
    hidden_size=1024,
    resampler_depth=2,
    resampler_n_latents=64,
    resampler_n_heads=16,
    resampler_head_dim=96,
    num_key_value_heads=4,
    rms_norm_eps=1e-5,
    hidden_act="silu",
    attention_dropout=0.0,
)


class TGLlavaConfig(PreTrainedConfig):
    r"""Composite configuration of :class:`~tg_llava_eval.modeling.TGLlavaForConditionalGeneration`.

    Args:
        vision_config: Vision tower (frozen), CLIP or SigLIP (:data:`VISION_TOWERS`; a dict
            without ``model_type`` is CLIP). Default: CLIP ViT-L/14-336.
        guide_config: Text tower that encodes the instruction (frozen), CLIP or SigLIP
            (:data:`GUIDE_TOWERS`). Default: CLIP-L text.
        text_config: The LLM; any config ``AutoModelForCausalLM`` can build. Default: Llama.
        qformer_config: TG-FOM's Q-Former. ``encoder_hidden_size`` is derived (= vision width,
            the width of the single projected guide token it cross-attends to).
        perceiver_config: TG-DP's perceiver (Idefics2 layers).
        image_token_id: Id of the ``<image>`` placeholder; the processor expands one marker into
            :attr:`num_image_tokens` copies and the model scatters visual features there.
        image_token: The placeholder's text.
        vision_feature_layer: Hidden-state index of the CLIP tower used as patch features (-2).
        projector_type: ``"mlp2x_gelu"`` (official) or ``"linear"``.
        projector_hidden_act: Activation inside the projector and the TG-DP MLPs (erf GELU).
        crop_grid: TG-DP cuts ``crop_grid × crop_grid`` crops of the double-size image.
        crop_source: ``"upsampled"``: crops of a ×``crop_grid`` bilinear upsample of the
            normalised image (the official behaviour: no extra detail); ``"original"``: crops of
            the full-resolution image (a flagged variant, not what the official code does).
        use_text_guided_mask: Enable TG-FOM.
        use_detail_perceiver: Enable TG-DP. Both switches off = LLaVA-1.5.
        perceiver_contexts: What each perceiver layer attends to, one entry per layer
            (official: ``("guide", "crops")``).
        guide_padding: ``"masked"`` masks the guide's padding inside TG-DP (so batching does not
            change answers); ``"official"`` reproduces the official mask ``ids != 0`` which leaves
            padding visible.
        template: Name of the conversation template (``plain``, ``vicuna_v1``, ``llama_3``,
            ``qwen_2``, or ``qwen_2_bare`` of the tiny presets).
        tie_word_embeddings: Whether the LLM ties input and output embeddings.
        variant: Name of the preset this config was built from (``tg_llava_eval.variants``),
            recorded for result tables; ``None`` for hand-made configs.
        initializer_range: Std of the normal init of TG-FOM's queries and TG-DP's latents (0.02,
            official).

    Raises:
        TGLlavaConfigError: On an inconsistent combination; the message names the fields.
    """

    model_type = "tg_llava"
    attribute_map = {"image_token_index": "image_token_id"}
    sub_configs_defaults = {
        # Resolved by the dict's `model_type` (CLIP when absent): CLIP or SigLIP towers, see
        # VISION_TOWERS / GUIDE_TOWERS for the families the model knows.
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_vision_model", init_kwargs=_CLIP_L_336_VISION
        ),
        "guide_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_text_model", init_kwargs=_CLIP_L_TEXT
        ),
        # Vicuna/Llama vocabulary (32000) plus the <image> row, padded to a multiple of 64 as in
        # llava-hf's LLaVA-1.5 conversions.
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="llama", init_kwargs={"vocab_size": 32064}
        ),
        "qformer_config": SubConfigSpec(config_class=Blip2QFormerConfig, init_kwargs=_OFFICIAL_QFORMER),
        "perceiver_config": SubConfigSpec(
            config_class=Idefics2PerceiverConfig, init_kwargs=_OFFICIAL_PERCEIVER
        ),
    }

    vision_config: dict | PreTrainedConfig | None = None
    guide_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    qformer_config: dict | PreTrainedConfig | None = None
    perceiver_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 32000
    image_token: str = "<image>"
    vision_feature_layer: int = -2
    projector_type: str = "mlp2x_gelu"
    projector_hidden_act: str = "gelu"
    crop_grid: int = 2
    crop_source: Literal["upsampled", "original"] = "upsampled"
    use_text_guided_mask: bool = True
    use_detail_perceiver: bool = True
    perceiver_contexts: list | tuple = PERCEIVER_CONTEXTS
    guide_padding: Literal["masked", "official"] = "masked"
    template: str = "vicuna_v1"
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    variant: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # The Q-Former cross-attends to one token: the pooled guide projected to the vision width
        # (official: Linear(768 -> 1024) feeding `encoder_width = mm_hidden_size`).
        self.qformer_config.encoder_hidden_size = self.vision_config.hidden_size
        self.perceiver_contexts = list(self.perceiver_contexts)
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        self.validate_sizes()

    # ------------------------------------------------------------------ derived sizes
    @property
    def image_size(self) -> int:
        """Side of the square base image in pixels (336 officially)."""
        return self.vision_config.image_size

    @property
    def vision_tower_convention(self) -> VisionTowerConvention:
        """The vision tower family's conventions (:data:`VISION_TOWERS`)."""
        return VISION_TOWERS[self.vision_config.model_type]

    @property
    def guide_tower_convention(self) -> GuideTowerConvention:
        """The guide tower family's conventions (:data:`GUIDE_TOWERS`)."""
        return GUIDE_TOWERS[self.guide_config.model_type]

    @property
    def vision_has_cls_token(self) -> bool:
        """Whether the vision tower's hidden states start with a CLS token to drop (CLIP yes, SigLIP no)."""
        return self.vision_tower_convention.has_cls_token

    @property
    def num_patches(self) -> int:
        """Patch tokens per image, CLS excluded: ``(image_size // patch_size)²`` (576 for CLIP-L/336,
        729 for SigLIP so400m at 384 px / patch 14)."""
        return (self.vision_config.image_size // self.vision_config.patch_size) ** 2

    @property
    def num_crops(self) -> int:
        """High-resolution crops per image seen by TG-DP: ``crop_grid²`` (4)."""
        return self.crop_grid**2

    @property
    def num_crop_positions(self) -> int:
        """Rows of TG-DP's position table: ``num_crops × num_patches`` (2304)."""
        return self.num_crops * self.num_patches

    @property
    def num_query_tokens(self) -> int:
        """TG-FOM's learnable queries: one per patch, since the mask is added patch-wise (576)."""
        return self.num_patches

    @property
    def num_detail_tokens(self) -> int:
        """Extra LLM tokens contributed by TG-DP (64), or 0 when it is switched off."""
        return self.perceiver_config.resampler_n_latents if self.use_detail_perceiver else 0

    @property
    def num_image_tokens(self) -> int:
        """LLM positions one ``<image>`` expands to: patches (+ TG-DP latents) — 576 or 640."""
        return self.num_patches + self.num_detail_tokens

    @property
    def guide_max_length(self) -> int:
        """Longest guide the text tower accepts: its positions (77 for CLIP, 64 for SigLIP)."""
        return self.guide_config.max_position_embeddings

    @property
    def guide_pooled_size(self) -> int:
        """Width of the guide tower's ``pooler_output``, TG-FOM's input: CLIP's ``hidden_size``
        (768), SigLIP's ``projection_size`` (its text ``head``; 1152 for so400m)."""
        return getattr(self.guide_config, self.guide_tower_convention.pooled_width_field)

    @property
    def guide_pad_to_max_length(self) -> bool:
        """Whether guides are padded to :attr:`guide_max_length` (SigLIP) instead of the longest (CLIP)."""
        return self.guide_tower_convention.pad_to_max_length

    @property
    def is_baseline(self) -> bool:
        """True when both TG modules are off, i.e. the model is LLaVA-1.5."""
        return not (self.use_text_guided_mask or self.use_detail_perceiver)

    # ------------------------------------------------------------------ validation
    def validate_sizes(self) -> None:
        """Check every cross-module size relation; raise naming both fields on a mismatch.

        Raises:
            TGLlavaConfigError: If a relation does not hold.
        """
        vision, guide, qformer, perceiver = (
            self.vision_config,
            self.guide_config,
            self.qformer_config,
            self.perceiver_config,
        )
        if vision.model_type not in VISION_TOWERS:
            raise TGLlavaConfigError(
                f"vision_config.model_type={vision.model_type!r} is not a vision tower TG-LLaVA knows; "
                f"known: {tuple(VISION_TOWERS)}"
            )
        if guide.model_type not in GUIDE_TOWERS:
            raise TGLlavaConfigError(
                f"guide_config.model_type={guide.model_type!r} is not a guide tower TG-LLaVA knows; "
                f"known: {tuple(GUIDE_TOWERS)}"
            )
        for name in ("image_size", "patch_size"):
            if not isinstance(getattr(vision, name), int):
                raise TGLlavaConfigError(
                    f"vision_config.{name} must be one integer (square images and patches), got "
                    f"{getattr(vision, name)!r}"
                )
        if vision.image_size < vision.patch_size:
            raise TGLlavaConfigError(
                f"vision_config.image_size ({vision.image_size}) is smaller than "
                f"vision_config.patch_size ({vision.patch_size}): no patch"
            )
        if vision.image_size % vision.patch_size and not self.vision_tower_convention.partial_patches:
            raise TGLlavaConfigError(
                f"vision_config.image_size ({vision.image_size}) must be a multiple of "
                f"vision_config.patch_size ({vision.patch_size})"
            )
        if self.projector_type not in PROJECTOR_TYPES:
            raise TGLlavaConfigError(
                f"projector_type={self.projector_type!r} is not one of {PROJECTOR_TYPES}"
            )
        if self.crop_source not in CROP_SOURCES:
            raise TGLlavaConfigError(f"crop_source={self.crop_source!r} is not one of {CROP_SOURCES}")
        if self.guide_padding not in GUIDE_PADDING_MODES:
            raise TGLlavaConfigError(
                f"guide_padding={self.guide_padding!r} is not one of {GUIDE_PADDING_MODES}"
            )
        if self.template not in TEMPLATES:
            raise TGLlavaConfigError(f"template={self.template!r} is not one of {tuple(TEMPLATES)}")
        if not isinstance(self.crop_grid, int) or self.crop_grid < 1:
            raise TGLlavaConfigError(f"crop_grid must be a positive integer, got {self.crop_grid!r}")
        n_layers = vision.num_hidden_layers
        if not -n_layers - 1 <= self.vision_feature_layer <= n_layers:
            raise TGLlavaConfigError(
                f"vision_feature_layer ({self.vision_feature_layer}) is out of range for "
                f"vision_config.num_hidden_layers ({n_layers})"
            )
        if qformer.hidden_size % qformer.num_attention_heads:
            raise TGLlavaConfigError(
                f"qformer_config.hidden_size ({qformer.hidden_size}) must be divisible by "
                f"qformer_config.num_attention_heads ({qformer.num_attention_heads})"
            )
        if qformer.encoder_hidden_size != vision.hidden_size:
            raise TGLlavaConfigError(
                f"qformer_config.encoder_hidden_size ({qformer.encoder_hidden_size}) must equal "
                f"vision_config.hidden_size ({vision.hidden_size})"
            )
        if perceiver.resampler_n_heads % perceiver.num_key_value_heads:
            raise TGLlavaConfigError(
                f"perceiver_config.resampler_n_heads ({perceiver.resampler_n_heads}) must be a "
                f"multiple of perceiver_config.num_key_value_heads ({perceiver.num_key_value_heads})"
            )
        if len(self.perceiver_contexts) != perceiver.resampler_depth:
            raise TGLlavaConfigError(
                f"perceiver_contexts has {len(self.perceiver_contexts)} entries but "
                f"perceiver_config.resampler_depth is {perceiver.resampler_depth}"
            )
        unknown = sorted(set(self.perceiver_contexts) - set(PERCEIVER_CONTEXTS))
        if unknown:
            raise TGLlavaConfigError(
                f"perceiver_contexts has unknown entries {unknown}; allowed: {PERCEIVER_CONTEXTS}"
            )
        if guide.max_position_embeddings < 2:
            raise TGLlavaConfigError(
                "guide_config.max_position_embeddings must leave room for BOS and EOS, got "
                f"{guide.max_position_embeddings}"
            )
        vocab = getattr(self.text_config, "vocab_size", None)
        if vocab is not None and not 0 <= self.image_token_id < vocab:
            raise TGLlavaConfigError(
                f"image_token_id ({self.image_token_id}) must be a row of the LLM embedding: "
                f"0 <= image_token_id < text_config.vocab_size ({vocab})"
            )
        checked_ids = [("guide_config.pad_token_id", guide.pad_token_id)]
        if self.guide_tower_convention.pools_at_eos:
            checked_ids.insert(0, ("guide_config.eos_token_id", guide.eos_token_id))
        for name, value in checked_ids:
            if value is not None and not 0 <= value < guide.vocab_size:
                raise TGLlavaConfigError(
                    f"{name} ({value}) is outside guide_config.vocab_size ({guide.vocab_size}); "
                    "the pooled guide embedding is read at the EOS position and guides are padded with it"
                )
        pooled_field = self.guide_tower_convention.pooled_width_field
        if not isinstance(getattr(guide, pooled_field, None), int):
            raise TGLlavaConfigError(
                f"guide_config.{pooled_field} (the width of the {guide.model_type} pooler_output TG-FOM "
                f"reads) must be an integer, got {getattr(guide, pooled_field, None)!r}"
            )


__all__ = [
    "TGLlavaConfig", "PROJECTOR_TYPES", "CROP_SOURCES", "GUIDE_PADDING_MODES", "GUIDE_TOWERS", "VISION_TOWERS",
    "GuideTowerConvention", "VisionTowerConvention",
]
