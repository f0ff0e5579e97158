"""Named model presets: the only place where model sizes are written down (STYLE rule 3).

Each :class:`Variant` is built once from a backbone table (:data:`LLM_BACKBONES`) and a switch set,
so the TG-LLaVA model, its LLaVA-1.5 baseline and the ablations of one LLM share every number:

==========================  ====================================================================
name                        what
==========================  ====================================================================
``tg-llava-<llm>``          TG-LLaVA (TG-FOM + TG-DP) on ``<llm>`` ∈ vicuna-13b, llama3-8b, qwen2-7b
``llava-1.5-<llm>``         the LLaVA-1.5 baseline of the same code (both switches off)
``tg-llava-<llm>-no-fom``   ablation: TG-DP only
``tg-llava-<llm>-no-dp``    ablation: TG-FOM only
``tiny``                    TG-LLaVA at toy sizes for tests and the demo (Qwen2-style LLM)
``tiny-baseline``           LLaVA-1.5 at the same toy sizes (also ``tiny-no-fom``, ``tiny-no-dp``)
==========================  ====================================================================

Provenance of the real sizes: CLIP ViT-L/14-336 and its text tower
(``openai/clip-vit-large-patch14-336`` config.json); the LLMs' own config.json files
(``lmsys/vicuna-13b-v1.5``, ``meta-llama/Meta-Llama-3-8B-Instruct``, ``Qwen/Qwen2-7B-Instruct``);
the TG module sizes are the official defaults of :class:`TGLlavaConfig`
(``AIDC-AI/TG-LLaVA@0009eb8``, reference/tg_llava_architecture.md §2). The ``<image>`` token gets an
embedding row as llava-hf does: Vicuna 32000 (vocabulary padded to 32064), Llama-3 128256 (padded to
128320, as llava-hf's llama3-llava-next), Qwen2 151646 (Qwen2-7B's embedding already has 152064 rows).

Real-size presets instantiate on the meta device without any download (see
``tests/unit/test_variants.py``, which pins every part's parameter count).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .errors import TGLlavaConfigError
from .modeling.configuration_tg_llava import TGLlavaConfig


@dataclass(frozen=True)
class LLMBackbone:
    """One LLM as the presets use it.

    Attributes:
        key: Short name used in variant names (``qwen2-7b``).
        display: Name used in tables (``Qwen2-7B-Instruct``).
        text_config: ``AutoConfig``-style dict of the LLM (``model_type`` included).
        image_token_id: Embedding row of ``<image>``.
        template: Conversation template of visual instruction tuning and inference.
        pretrain_template: Template of stage 1 as the official scripts use it.
        source: Where the numbers come from.
    """

    key: str
    display: str
    text_config: dict[str, Any]
    image_token_id: int
    template: str
    pretrain_template: str
    source: str


LLM_BACKBONES: dict[str, LLMBackbone] = {
    "vicuna-13b": LLMBackbone(
        key="vicuna-13b",
        display="Vicuna-13B-v1.5",
        text_config=dict(
            model_type="llama", vocab_size=32064, hidden_size=5120, intermediate_size=13824,
            num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40,
            max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
        ),
        image_token_id=32000,
        template="vicuna_v1",
        # The official finetune script's comment says `plain` for Vicuna in both stages; `plain` is
        # LLaVA-1.5's stage-1 template and cannot process multi-turn stage-2 data (reference §3 #11).
        pretrain_template="plain",
        source="lmsys/vicuna-13b-v1.5 config.json; <image> row as llava-hf llava-1.5-13b-hf",
    ),
    "llama3-8b": LLMBackbone(
        key="llama3-8b",
        display="Llama-3-8B-Instruct",
        text_config=dict(
            model_type="llama", vocab_size=128320, hidden_size=4096, intermediate_size=14336,
            num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
            max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
            bos_token_id=128000, eos_token_id=128009, tie_word_embeddings=False,
        ),
        image_token_id=128256,
        template="llama_3",
        pretrain_template="llama_3",
        source="meta-llama/Meta-Llama-3-8B-Instruct config.json; <image> row as llava-hf llama3-llava-next-8b-hf",
    ),
    "qwen2-7b": LLMBackbone(
        key="qwen2-7b",
        display="Qwen2-7B-Instruct",
        text_config=dict(
            model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
            num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
            bos_token_id=151643, eos_token_id=151645, tie_word_embeddings=False,
        ),
        image_token_id=151646,
        template="qwen_2",
        pretrain_template="qwen_2",
        source="Qwen/Qwen2-7B-Instruct config.json; <image> = first free row after the 151646 tokens",
    ),
    "tiny": LLMBackbone(
        key="tiny",
        display="tiny-Qwen2",
        # vocab_size and image_token_id are replaced by the locally built tokenizer's values.
        text_config=dict(
            model_type="qwen2", vocab_size=1024, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0,
            tie_word_embeddings=False,
        ),
        image_token_id=1023,
        # qwen_2 without its system text: a third of every tiny sequence otherwise (docs/demo.md).
        template="qwen_2_bare",
        pretrain_template="qwen_2_bare",
        source="toy sizes for tests and the demo (environment.md §1 'tiny configs that work')",
    ),
}

# Real CLIP ViT-L/14-336 sizes are the TGLlavaConfig defaults; the tiny towers are written here.
_TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    image_size=56, patch_size=14, projection_dim=32,
)
#: Merges of the real CLIP BPE kept for the tiny guide tokenizer: 1000 merges give a valid CLIP
#: BPE of 1514 tokens (256 bytes x 2 + merges + start/end), ids 1512/1513 for start/end.
TINY_GUIDE_MERGES = 1000
_TINY_GUIDE = dict(
    hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, projection_dim=24,
    vocab_size=1514, bos_token_id=1512, eos_token_id=1513, pad_token_id=1513,
)
# Deliberately different widths from the vision tower so that a swapped dimension cannot pass.
_TINY_QFORMER = dict(
    hidden_size=40, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
    cross_attention_frequency=2, layer_norm_eps=1e-12,
)
_TINY_PERCEIVER = dict(
    hidden_size=48, resampler_depth=2, resampler_n_latents=8, resampler_n_heads=4,
    resampler_head_dim=12, num_key_value_heads=2, rms_norm_eps=1e-5,
)

#: switch sets by suffix
SWITCHES: dict[str, dict[str, bool]] = {
    "tg": dict(use_text_guided_mask=True, use_detail_perceiver=True),
    "baseline": dict(use_text_guided_mask=False, use_detail_perceiver=False),
    "no-fom": dict(use_text_guided_mask=False, use_detail_perceiver=True),
    "no-dp": dict(use_text_guided_mask=True, use_detail_perceiver=False),
}


@dataclass(frozen=True)
class Variant:
    """A named preset.

    Attributes:
        name: Preset name (``tg-llava-qwen2-7b``).
        method: ``"TG-LLaVA"``, ``"LLaVA-1.5"`` or the ablation label.
        switches: Key of :data:`SWITCHES`.
        backbone: The LLM.
        tiny: Toy towers instead of CLIP-L.
        provenance: Where the numbers come from.
    """

    name: str
    method: str
    switches: str
    backbone: LLMBackbone
    tiny: bool = False
    provenance: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def llm(self) -> str:
        """The LLM's display name."""
        return self.backbone.display

    @property
    def template(self) -> str:
        """Conversation template for stage 2 and inference."""
        return self.backbone.template

    @property
    def pretrain_template(self) -> str:
        """Conversation template for stage 1 (as the official scripts use it)."""
        return self.backbone.pretrain_template

    def config(self, **overrides: Any) -> TGLlavaConfig:
        """Build the :class:`TGLlavaConfig` of this preset.

        Args:
            **overrides: Top-level config fields to replace; ``text_config`` / ``guide_config``
                dict overrides are merged into the preset's sub-config.

        Returns:
            A validated config.
        """
        text_config = copy.deepcopy(self.backbone.text_config)
        text_config.update(overrides.pop("text_config", {}))
        kwargs: dict[str, Any] = dict(
            text_config=text_config,
            image_token_id=self.backbone.image_token_id,
            template=self.backbone.template,
            variant=self.name,
            **SWITCHES[self.switches],
        )
        if self.tiny:
            guide = dict(_TINY_GUIDE)
            guide.update(overrides.pop("guide_config", {}))
            kwargs.update(
                vision_config=dict(_TINY_VISION),
                guide_config=guide,
                qformer_config=dict(_TINY_QFORMER),
                perceiver_config=dict(_TINY_PERCEIVER),
            )
        elif "guide_config" in overrides:
            kwargs["guide_config"] = overrides.pop("guide_config")
        kwargs.update(self.extra)
        kwargs.update(overrides)
        return TGLlavaConfig(**kwargs)


def _build_registry() -> dict[str, Variant]:
    variants: dict[str, Variant] = {}
    paper = "TG-LLaVA (Yan et al., AAAI 2025); official code AIDC-AI/TG-LLaVA@0009eb8"
    for key in ("vicuna-13b", "llama3-8b", "qwen2-7b"):
        backbone = LLM_BACKBONES[key]
        source = f"{paper}; LLM: {backbone.source}; vision: openai/clip-vit-large-patch14-336"
        variants[f"tg-llava-{key}"] = Variant(f"tg-llava-{key}", "TG-LLaVA", "tg", backbone, provenance=source)
        variants[f"llava-1.5-{key}"] = Variant(
            f"llava-1.5-{key}", "LLaVA-1.5", "baseline", backbone,
            provenance=f"LLaVA-1.5 (Liu et al., CVPR 2024) recipe on {backbone.display}; same code with both TG switches off",
        )
        for ablation, label in (("no-fom", "TG-LLaVA w/o TG-FOM"), ("no-dp", "TG-LLaVA w/o TG-DP")):
            variants[f"tg-llava-{key}-{ablation}"] = Variant(
                f"tg-llava-{key}-{ablation}", label, ablation, backbone, provenance=source
            )
    tiny = LLM_BACKBONES["tiny"]
    for suffix, switches, method in (
        ("", "tg", "TG-LLaVA"),
        ("-baseline", "baseline", "LLaVA-1.5"),
        ("-no-fom", "no-fom", "TG-LLaVA w/o TG-FOM"),
        ("-no-dp", "no-dp", "TG-LLaVA w/o TG-DP"),
    ):
        variants[f"tiny{suffix}"] = Variant(
            f"tiny{suffix}", method, switches, tiny, tiny=True, provenance=tiny.source
        )
    return variants


VARIANTS: dict[str, Variant] = _build_registry()


def get_variant(name: str) -> Variant:
    """Look a preset up by name.

    Raises:
        TGLlavaConfigError: Unknown name (the message lists the known ones).
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise TGLlavaConfigError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None


def list_variants() -> list[str]:
    """All preset names."""
    return list(VARIANTS)


__all__ = ["TINY_GUIDE_MERGES", "LLMBackbone", "LLM_BACKBONES", "Variant", "VARIANTS", "get_variant", "list_variants", "SWITCHES"]
