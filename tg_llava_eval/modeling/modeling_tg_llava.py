"""TG-LLaVA: LLaVA-1.5 whose vision side is guided by the instruction text.

Implements *TG-LLaVA: Text Guided LLaVA via Learnable Latent Embeddings* (Yan et al., AAAI 2025)
as the official code (``AIDC-AI/TG-LLaVA@0009eb8``) computes it, on transformers' own blocks:

* **vision tower** — ``CLIPVisionModel``, frozen; features of hidden layer
  ``config.vision_feature_layer`` (-2) without CLS: ``F_v [B, P, Dv]`` (P = 576, Dv = 1024).
* **guide tower** — ``CLIPTextModel`` of the same CLIP, frozen; reads the instruction text and gives
  ``pooler_output [B, Dg]`` (final-LN state at EOS, no text projection) and
  ``last_hidden_state [B, Lg, Dg]`` (Dg = 768, Lg ≤ 77).
* **TG-FOM** (:class:`TGLlavaTextGuidedMask`, official ``mm_cross_attn``) — P learnable queries run
  through a Q-Former (``Blip2QFormerModel``) that cross-attends to ONE token, the pooled guide
  projected to Dv; a zero-initialised linear layer turns the result into a mask ``M [B, P, Dv]``
  that is *added* to ``F_v`` before the projector. At initialisation M = 0 and the model is exactly
  LLaVA-1.5.
* **projector** (:class:`TGLlavaProjector`) — ``mlp2x_gelu``: Linear(Dv→H), GELU, Linear(H→H).
* **TG-DP** (:class:`TGLlavaDetailPerceiver`, official ``mm_patch_encoder``) — the CLIP features of
  ``crop_grid²`` crops (flattened crop-major to ``[B, C·P, Dv]``) plus a learned position table go
  through an MLP; a perceiver resampler (Idefics2 layers) whose layers attend, in the order given by
  ``config.perceiver_contexts``, to the projected guide states (layer 0) and to the crop tokens
  (layer 1) compresses them into N latents (64), and an MLP maps them to the LLM width H.
* **LLM** — any ``AutoModelForCausalLM``. The visual tokens ``cat([projector(F_v + M), TG-DP])``
  (576 + 64 = 640 per image) are scattered into the positions of the ``<image>`` token ids that the
  processor expanded (llava-hf convention), after a count check.

Deviations from the official code, all deliberate and documented in ``docs/architecture.md``:
no unused Q-Former word embeddings / MLM head / text-branch FFNs (the converter drops them);
``guide_padding="masked"`` (default) masks the guide's padding inside TG-DP so batching does not
change answers — ``"official"`` reproduces the unmasked behaviour.

SigLIP towers (beyond the official code, which hard-codes CLIP; no parity reference exists):
``SiglipVisionModel`` has no CLS token, so all ``(image_size // patch_size)²`` hidden states are
patches (729 at 384 px / patch 14: 729 TG-FOM queries, 4 × 729 TG-DP positions);
``SiglipTextModel``'s ``pooler_output`` is its ``head`` applied to the last position's final-LN
state (``[B, projection_size]``; with guides padded to ``max_length`` the last position is a pad,
as SigLIP was trained) and it is called without an attention mask, as it was trained. Which
family a tower is comes from its sub-config's ``model_type``
(:data:`~.configuration_tg_llava.VISION_TOWERS` / :data:`~.configuration_tg_llava.GUIDE_TOWERS`).

The CLIP outputs are text-independent: :meth:`TGLlavaForConditionalGeneration.get_image_features`
is the cacheable part, :meth:`~TGLlavaForConditionalGeneration.fuse_visual_features` the
text-dependent rest. :meth:`~TGLlavaForConditionalGeneration.from_components` assembles a stage-1
start from pretrained CLIP and LLM checkpoints (strict loading, fresh TG modules, ``<image>`` row)
through :mod:`tg_llava_eval.checkpoints`: this file holds the nn.Modules and does no file or hub I/O.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel
from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverLayer, Idefics2RMSNorm
from transformers.utils import logging

from ..errors import TGLlavaInputError
from .configuration_tg_llava import TGLlavaConfig

logger = logging.get_logger(__name__)

#: Keyword inputs that only the prefill step of ``generate`` needs (the KV cache holds the rest).
VISUAL_INPUT_NAMES = (
    "pixel_values",
    "crop_pixel_values",
    "patch_features",
    "crop_features",
    "guide_input_ids",
    "guide_attention_mask",
)

#: Module groups that training stages switch on by name (docs/training.md); see ``trainable_groups``.
TRAINABLE_GROUPS = ("projector", "text_guided_mask", "detail_perceiver", "llm")
#: Module groups that stay frozen in both official stages.
FROZEN_GROUPS = ("vision_tower", "guide_tower")


class TGLlavaProjector(nn.Module):
    """Two-layer MLP ``Linear(in→out), act, Linear(out→out)`` (``mlp2x_gelu``) or one Linear.

    Used for the multimodal projector (Dv→H) and for TG-DP's ``pre_mlp`` (Dv→Dp) and output
    projection (Dp→H), which have this same shape in the official code.

    Args:
        in_features: Input width.
        out_features: Output (and hidden) width.
        hidden_act: Activation name in ``transformers.activations.ACT2FN`` (``"gelu"`` = erf GELU).
        projector_type: ``"mlp2x_gelu"`` or ``"linear"``.
    """

    def __init__(self, in_features: int, out_features: int, *, hidden_act: str, projector_type: str):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, out_features)
        if projector_type == "mlp2x_gelu":
            self.act = ACT2FN[hidden_act]
            self.linear_2 = nn.Linear(out_features, out_features)
        else:
            self.act = None
            self.linear_2 = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``[..., in] -> [..., out]``."""
        hidden_states = self.linear_1(hidden_states)
        if self.linear_2 is not None:
            hidden_states = self.linear_2(self.act(hidden_states))
        return hidden_states


class TGLlavaTextGuidedMask(nn.Module):
    """TG-FOM: a text-guided additive mask on the CLIP patch features (official ``mm_cross_attn``).

    ``M = output_projection(QFormer(query_tokens; encoder = guide_projection(pooled)[:, None]))``.
    The Q-Former cross-attends to a single key, so its cross-attention softmax is identically 1:
    the text enters as one vector per sample, added to every query state (official behaviour; the
    cross-attention query/key weights run but cannot change the output).

    Args:
        config: The composite config; uses ``qformer_config``, :attr:`TGLlavaConfig.guide_pooled_size`
            (the guide ``pooler_output`` width), ``vision_config.hidden_size`` and
            :attr:`TGLlavaConfig.num_query_tokens`.
    """

    def __init__(self, config: TGLlavaConfig):
        super().__init__()
        qformer = config.qformer_config
        vision_width = config.vision_config.hidden_size
        # [1, P, Dq]: one learnable latent per patch (the mask is added patch-wise).
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, qformer.hidden_size))
        # Pooled guide (Dg: CLIP hidden_size, SigLIP projection_size) -> the one key/value token of
        # the cross-attention (Q-Former encoder width).
        self.guide_projection = nn.Linear(config.guide_pooled_size, qformer.encoder_hidden_size)
        self.qformer = Blip2QFormerModel(qformer)
        # Zero-initialised (weight and bias): M = 0 at init, so training starts from LLaVA-1.5.
        self.output_projection = nn.Linear(qformer.hidden_size, vision_width)

    def forward(self, guide_pooled: torch.Tensor) -> torch.Tensor:
        """Compute the mask.

        Args:
            guide_pooled: ``[B, Dg]`` guide tower ``pooler_output``.

        Returns:
            ``[B, P, Dv]`` mask to add to the patch features.
        """
        batch = guide_pooled.shape[0]
        guide_token = self.guide_projection(guide_pooled)[:, None, :]  # [B, 1, Dv]
        queries = self.query_tokens.expand(batch, -1, -1)  # [B, P, Dq]
        encoder_mask = torch.ones(guide_token.shape[:2], dtype=torch.long, device=guide_token.device)
        states = self.qformer(
            query_embeds=queries,
            encoder_hidden_states=guide_token,
            encoder_attention_mask=encoder_mask,
        ).last_hidden_state  # [B, P, Dq]
        # The Q-Former keeps its own dtype (fp32 in mixed setups): come back to the caller's.
        return self.output_projection(states.to(self.output_projection.weight.dtype))


class TGLlavaDetailPerceiver(nn.Module):
    """TG-DP: text-guided detail perceiver over high-resolution crops (official ``mm_patch_encoder``).

    ``crops [B, C, P, Dv] -> flatten crop-major [B, C·P, Dv] + position table -> pre_mlp -> [B, C·P, Dp]``;
    ``guide [B, Lg, Dg] -> guide_projection -> [B, Lg, Dp]``; N latents ``[N, Dp]`` pass through the
    perceiver layers, layer ``i`` attending to ``concat(context_i, latents)`` where ``context_i`` is
    the guide or the crops as ``config.perceiver_contexts[i]`` says; a final RMSNorm and the output
    MLP give ``[B, N, H]``.

    Args:
        config: The composite config; uses ``perceiver_config`` (Idefics2 perceiver fields),
            ``vision_config.hidden_size``, ``guide_config.hidden_size``, ``text_config.hidden_size``,
            :attr:`TGLlavaConfig.num_crop_positions`, ``perceiver_contexts`` and the projector fields.
    """

    def __init__(self, config: TGLlavaConfig):
        super().__init__()
        perceiver = config.perceiver_config
        vision_width = config.vision_config.hidden_size
        width = perceiver.hidden_size
        self.contexts = tuple(config.perceiver_contexts)
        self.num_crop_positions = config.num_crop_positions
        self.position_embedding = nn.Embedding(config.num_crop_positions, vision_width)
        self.register_buffer(
            "position_ids", torch.arange(config.num_crop_positions), persistent=False
        )
        self.pre_mlp = TGLlavaProjector(
            vision_width, width, hidden_act=config.projector_hidden_act, projector_type="mlp2x_gelu"
        )
        self.guide_projection = nn.Linear(config.guide_config.hidden_size, width)
        self.latents = nn.Parameter(torch.zeros(perceiver.resampler_n_latents, width))
        self.layers = nn.ModuleList(
            [Idefics2PerceiverLayer(perceiver, layer_idx) for layer_idx in range(perceiver.resampler_depth)]
        )
        self.norm = Idefics2RMSNorm(width, eps=perceiver.rms_norm_eps)
        self.output_projection = TGLlavaProjector(
            width,
            config.text_config.hidden_size,
            hidden_act=config.projector_hidden_act,
            projector_type="mlp2x_gelu",
        )
        self._perceiver_config = perceiver
        if perceiver._attn_implementation is None:
            # The perceiver layers are plain modules, not a PreTrainedModel, so transformers does not
            # dispatch their attention backend: use the composite model's choice.
            perceiver._attn_implementation = config._attn_implementation or "eager"

    def _context_mask(self, context_mask: torch.Tensor | None, latents: torch.Tensor) -> torch.Tensor | None:
        """4-D attention mask over ``concat(context, latents)`` keys, or None when nothing is masked."""
        if context_mask is None or bool(context_mask.all()):
            return None
        latent_mask = torch.ones(
            latents.shape[:2], dtype=context_mask.dtype, device=context_mask.device
        )
        return create_bidirectional_mask(
            config=self._perceiver_config,
            inputs_embeds=latents,
            attention_mask=torch.cat([context_mask, latent_mask], dim=-1),
        )

    def forward(
        self,
        crop_features: torch.Tensor,
        guide_states: torch.Tensor,
        guide_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compress the crops, guided by the text, into detail tokens.

        Args:
            crop_features: ``[B, C, P, Dv]`` CLIP patch features of each sample's crops, in
                row-major grid order (TL, TR, BL, BR for 2 × 2).
            guide_states: ``[B, Lg, Dg]`` CLIP text ``last_hidden_state``.
            guide_mask: ``[B, Lg]`` 1 = real token, 0 = padding; ``None`` attends to every position
                (the official behaviour).

        Returns:
            ``[B, N, H]`` detail tokens in LLM space.
        """
        batch, num_crops, num_patches, width = crop_features.shape
        if num_crops * num_patches != self.num_crop_positions:
            raise ValueError(
                f"crop_features has {num_crops} crops x {num_patches} patches but TG-DP's position "
                f"table has {self.num_crop_positions} rows (config.num_crop_positions)"
            )
        crops = crop_features.reshape(batch, num_crops * num_patches, width)
        crops = crops + self.position_embedding(self.position_ids)[None]
        crops = self.pre_mlp(crops)  # [B, C·P, Dp]
        guide = self.guide_projection(guide_states.to(crops.dtype))  # [B, Lg, Dp]

        latents = self.latents[None].expand(batch, -1, -1)  # [B, N, Dp]
        guide_attention = self._context_mask(guide_mask, latents)
        for layer, context_name in zip(self.layers, self.contexts):
            if context_name == "guide":
                latents = layer(latents, guide, attention_mask=guide_attention)
            else:
                latents = layer(latents, crops, attention_mask=None)
        return self.output_projection(self.norm(latents))


class TGLlavaPreTrainedModel(PreTrainedModel):
    """Weight init and loading conventions shared by TG-LLaVA models."""

    config: TGLlavaConfig
    config_class = TGLlavaConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Official initialisation of the TG modules; everything else as transformers does it.

        Children are initialised before their parents, so the zero output layer of TG-FOM set
        here is not overwritten by the generic ``nn.Linear`` rule.
        """
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, TGLlavaTextGuidedMask):
            init.normal_(module.query_tokens, mean=0.0, std=std)
            init.zeros_(module.output_projection.weight)
            init.zeros_(module.output_projection.bias)
        elif isinstance(module, TGLlavaDetailPerceiver):
            init.normal_(module.latents, mean=0.0, std=std)
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[0]))


class TGLlavaForConditionalGeneration(TGLlavaPreTrainedModel, GenerationMixin):
    """TG-LLaVA (or, with both switches off, LLaVA-1.5) for image-conditioned generation.

    Args:
        config: A :class:`TGLlavaConfig`. Towers are built from their sub-configs (no I/O); use
            ``from_pretrained`` for weights, or :meth:`from_components` for a stage-1 start
            assembled from pretrained CLIP and LLM checkpoints.
    """

    def __init__(self, config: TGLlavaConfig):
        super().__init__(config)
        # `_from_config` is what `AutoModel.from_config` calls (attention backend, dtype).
        # The tower classes are named by the config's conventions (AutoModel cannot build every family).
        self.vision_tower = getattr(transformers, config.vision_tower_convention.model_class)._from_config(
            config.vision_config)
        self.guide_tower = getattr(transformers, config.guide_tower_convention.model_class)._from_config(
            config.guide_config)
        self.multi_modal_projector = TGLlavaProjector(
            config.vision_config.hidden_size,
            config.text_config.hidden_size,
            hidden_act=config.projector_hidden_act,
            projector_type=config.projector_type,
        )
        self.text_guided_mask = TGLlavaTextGuidedMask(config) if config.use_text_guided_mask else None
        self.detail_perceiver = TGLlavaDetailPerceiver(config) if config.use_detail_perceiver else None
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        # device_map="auto" must not split a decoder layer, a CLIP layer or a perceiver layer.
        self._no_split_modules = sorted(
            set(self.language_model._no_split_modules or ())
            | set(self.vision_tower._no_split_modules or ())
            | {"Idefics2PerceiverLayer"}
        )
        self.post_init()
        self.freeze_towers()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, then :meth:`freeze_towers` (loading re-creates the
        parameters, which resets their ``requires_grad``). With ``output_loading_info=True`` the
        ``(model, loading_info)`` pair is returned, as transformers does."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.freeze_towers()
        return loaded

    @classmethod
    def from_components(cls, vision: str | os.PathLike, llm: str | os.PathLike, **kwargs: Any) -> TGLlavaForConditionalGeneration:
        """Assemble a stage-1 start: pretrained CLIP towers and LLM, fresh TG modules and projector.

        A delegate of :func:`tg_llava_eval.checkpoints.assembling.assemble_model`, which documents
        the arguments (``variant``, ``guide``, ``tokenizer``, ``guide_tokenizer``, ``dtype``,
        ``seed``) and the rules; the model file itself does no I/O.
        """
        # Imported here: checkpoint code builds on this module, never the other way.
        from ..checkpoints.assembling import assemble_model

        return assemble_model(vision, llm, model_class=cls, **kwargs)

    def freeze_towers(self) -> None:
        """Freeze both CLIP towers, as in both official training stages."""
        for module in self.frozen_groups().values():
            module.requires_grad_(False)

    # ------------------------------------------------------------------ embeddings
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    # ------------------------------------------------------------------ module groups
    def trainable_groups(self) -> dict[str, nn.Module]:
        """Module groups a training stage may unfreeze, by name (absent TG modules omitted)."""
        groups: dict[str, nn.Module] = {"projector": self.multi_modal_projector}
        if self.text_guided_mask is not None:
            groups["text_guided_mask"] = self.text_guided_mask
        if self.detail_perceiver is not None:
            groups["detail_perceiver"] = self.detail_perceiver
        groups["llm"] = self.language_model
        return groups

    def frozen_groups(self) -> dict[str, nn.Module]:
        """The CLIP towers, frozen in both official stages."""
        return {"vision_tower": self.vision_tower, "guide_tower": self.guide_tower}

    # ------------------------------------------------------------------ vision side
    def _select_patch_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S] -> [N, P, Dv]``: hidden layer ``vision_feature_layer``, CLS dropped when
        the tower has one (CLIP; SigLIP's hidden states are the P patches only)."""
        tower = self.vision_tower
        pixel_values = pixel_values.to(dtype=tower.dtype, device=tower.device)
        frozen = not any(p.requires_grad for p in tower.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            outputs = tower(pixel_values, output_hidden_states=True)
        states = outputs.hidden_states[self.config.vision_feature_layer]  # [N, (1 +) P, Dv]
        return states[:, 1:] if self.config.vision_has_cls_token else states

    def get_image_features(
        self, pixel_values: torch.Tensor, crop_pixel_values: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the frozen vision tower on the base image and its crops (text-independent, cacheable).

        Args:
            pixel_values: ``[B, 3, S, S]`` normalised base images.
            crop_pixel_values: ``[B, C, 3, S, S]`` normalised crops, or ``None`` when TG-DP is off.

        Returns:
            ``(patch_features [B, P, Dv], crop_features [B, C, P, Dv] or None)``.
        """
        patch_features = self._select_patch_features(pixel_values)
        crop_features = None
        if self.detail_perceiver is not None:
            if crop_pixel_values is None:
                raise TGLlavaInputError(
                    "crop_pixel_values is required when use_detail_perceiver=True "
                    "(the processor produces it next to pixel_values)"
                )
            batch, num_crops = crop_pixel_values.shape[:2]
            flat = self._select_patch_features(crop_pixel_values.flatten(0, 1))
            crop_features = flat.reshape(batch, num_crops, *flat.shape[1:])
        return patch_features, crop_features

    def get_guide_features(
        self, guide_input_ids: torch.Tensor, guide_attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the guide text with the frozen text tower.

        Args:
            guide_input_ids: ``[B, Lg]`` guide token ids, right-padded (CLIP: Lg ≤ 77, the batch's
                longest; SigLIP: Lg = 64, always padded to ``max_length``).
            guide_attention_mask: ``[B, Lg]`` as produced by the processor; passed to the tower
                only when its family was trained with one (CLIP, not SigLIP:
                ``GuideTowerConvention.tower_attention_mask``).

        Returns:
            ``(pooled [B, Dp], states [B, Lg, Dg])``: ``pooler_output`` and ``last_hidden_state``.
            CLIP: the EOS state after the final LayerNorm, no projection (Dp = Dg = hidden_size);
            SigLIP: the text ``head`` of the last position's state (Dp = projection_size).
        """
        tower = self.guide_tower
        guide_input_ids = guide_input_ids.to(tower.device)
        if not self.config.guide_tower_convention.tower_attention_mask:
            guide_attention_mask = None
        if guide_attention_mask is not None:
            guide_attention_mask = guide_attention_mask.to(tower.device)
        frozen = not any(p.requires_grad for p in tower.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            outputs = tower(input_ids=guide_input_ids, attention_mask=guide_attention_mask)
        return outputs.pooler_output, outputs.last_hidden_state

    def fuse_visual_features(
        self,
        patch_features: torch.Tensor,
        crop_features: torch.Tensor | None,
        guide_pooled: torch.Tensor | None,
        guide_states: torch.Tensor | None,
        guide_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Turn cached CLIP features and the guide into the visual tokens the LLM receives.

        Args:
            patch_features: ``[B, P, Dv]`` from :meth:`get_image_features`.
            crop_features: ``[B, C, P, Dv]`` or ``None`` (TG-DP off).
            guide_pooled: ``[B, Dp]`` guide ``pooler_output`` (required with TG-FOM).
            guide_states: ``[B, Lg, Dg]`` (required with TG-DP).
            guide_mask: ``[B, Lg]`` padding mask for TG-DP; ignored (everything attended) when
                ``config.guide_padding == "official"``.

        Returns:
            ``[B, P (+ N), H]``: ``projector(F_v + M)`` followed by TG-DP's N tokens.
        """
        features = patch_features.to(self.multi_modal_projector.linear_1.weight.dtype)
        if self.text_guided_mask is not None:
            if guide_pooled is None:
                raise TGLlavaInputError("TG-FOM needs the guide text: guide_input_ids is missing")
            mask = self.text_guided_mask(guide_pooled.to(features.dtype))
            features = features + mask.to(features.dtype)
        tokens = self.multi_modal_projector(features)  # [B, P, H]
        if self.detail_perceiver is not None:
            if guide_states is None or crop_features is None:
                raise TGLlavaInputError(
                    "TG-DP needs crop features and the guide text (crop_pixel_values / guide_input_ids)"
                )
            if self.config.guide_padding == "official":
                guide_mask = None
            detail = self.detail_perceiver(
                crop_features.to(features.dtype), guide_states.to(features.dtype), guide_mask
            )
            tokens = torch.cat([tokens, detail.to(tokens.dtype)], dim=1)
        return tokens

    # ------------------------------------------------------------------ full forward
    def _scatter_image_tokens(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, visual_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Write each image-bearing sample's visual tokens into its ``<image>`` positions.

        A sample has either no image token (text-only: its visual row is ignored, as the official
        code ignores the zero image of text-only samples) or exactly ``num_image_tokens``.
        """
        is_image = input_ids == self.config.image_token_id  # [B, T]
        counts = is_image.sum(dim=1)
        expected = visual_tokens.shape[1]
        bad = ((counts != 0) & (counts != expected)).nonzero().flatten().tolist()
        if bad:
            raise TGLlavaInputError(
                f"image tokens and image features do not match: sample(s) {bad} have "
                f"{[int(counts[i]) for i in bad]} image tokens, each image gives {expected} features "
                "(one <image> marker per sample, expanded by TGLlavaProcessor)"
            )
        has_image = counts > 0
        if visual_tokens.shape[0] != input_ids.shape[0]:
            raise TGLlavaInputError(
                f"{visual_tokens.shape[0]} image rows for a batch of {input_ids.shape[0]} sequences"
            )
        selected = visual_tokens[has_image].to(inputs_embeds.dtype).reshape(-1, inputs_embeds.shape[-1])
        return inputs_embeds.masked_scatter(is_image[..., None].to(inputs_embeds.device), selected)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        crop_pixel_values: torch.Tensor | None = None,
        guide_input_ids: torch.LongTensor | None = None,
        guide_attention_mask: torch.Tensor | None = None,
        patch_features: torch.Tensor | None = None,
        crop_features: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Embed text, insert visual tokens at ``<image>`` positions, run the LLM.

        Args:
            input_ids: ``[B, T]`` with each ``<image>`` expanded to ``num_image_tokens`` ids.
            attention_mask: ``[B, T]``.
            pixel_values: ``[B, 3, S, S]`` (one row per sample; ignored for samples without image
                tokens).
            crop_pixel_values: ``[B, C, 3, S, S]`` (TG-DP).
            guide_input_ids, guide_attention_mask: ``[B, Lg]`` guide tokens (TG modules).
            patch_features, crop_features: precomputed :meth:`get_image_features` outputs, used
                instead of ``pixel_values`` / ``crop_pixel_values`` (vision-feature cache).
            labels: ``[B, T]`` with -100 on ignored positions; the LLM shifts them.
            Other arguments are passed to the LLM.

        Returns:
            The LLM's ``CausalLMOutputWithPast``.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        has_visual = pixel_values is not None or patch_features is not None
        if has_visual and input_ids is not None:
            # The visual branch runs whenever images are given, even if no sample of this batch
            # has an image token (a text-only micro-batch): distributed training (DDP, ZeRO) needs
            # every rank to use the same parameters at every step, as the official code ensures
            # by keeping the zero image's features in the graph.
            if patch_features is None:
                patch_features, crop_features = self.get_image_features(pixel_values, crop_pixel_values)
            guide_pooled = guide_states = None
            if not self.config.is_baseline:
                if guide_input_ids is None:
                    raise TGLlavaInputError(
                        "guide_input_ids is required: TG-FOM/TG-DP read the instruction text"
                    )
                guide_pooled, guide_states = self.get_guide_features(guide_input_ids, guide_attention_mask)
            visual_tokens = self.fuse_visual_features(
                patch_features,
                crop_features,
                guide_pooled,
                guide_states,
                guide_attention_mask.to(patch_features.device) if guide_attention_mask is not None else None,
            )
            if bool((input_ids == self.config.image_token_id).any()):
                inputs_embeds = self._scatter_image_tokens(input_ids, inputs_embeds, visual_tokens)
            else:
                inputs_embeds = inputs_embeds + 0.0 * visual_tokens.sum().to(inputs_embeds.dtype)
        return self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        """As the generic one, but visual inputs reach only the prefill step (the cache has them)."""
        model_inputs = super().prepare_inputs_for_generation(
            *args, is_first_iteration=is_first_iteration, **kwargs
        )
        if not is_first_iteration and kwargs.get("use_cache", True):
            for name in VISUAL_INPUT_NAMES:
                model_inputs.pop(name, None)
        return model_inputs


__all__ = [
    "TGLlavaProjector",
    "TGLlavaTextGuidedMask",
    "TGLlavaDetailPerceiver",
    "TGLlavaPreTrainedModel",
    "TGLlavaForConditionalGeneration",
    "TRAINABLE_GROUPS",
    "FROZEN_GROUPS",
]
