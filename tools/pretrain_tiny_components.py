"""Pretrain the tiny CLIP and the tiny LLM that ``make demo`` assembles its models from.

LLaVA-1.5 and TG-LLaVA never start from random weights: stage 1 aligns a projector between a
pretrained CLIP and a pretrained LLM, and stage 2 tunes on instructions an LLM that already reads
and answers text. A 2-layer LLM trained from random weights inside the demo's minutes does not learn
the yes/no and multiple-choice formats even when the scene is written out in the prompt
(docs/demo.md, ``bench/demo_text_only.py``), so the demo starts, like the paper, from pretrained
parts. This script makes them once; the weights are committed under
``tg_llava_eval/demo_components/`` with the exact command in its ``pretraining.json``.

What each part learns (the stand-ins for CLIP's and the LLM's pretraining; no question of the demo's
held-out sets is seen, and no held-out scene layout either):

* **CLIP** (``clip/``, a tiny ``CLIPModel``: the vision tower and the guide's text tower at the
  ``tiny`` preset's sizes): CLIP's contrastive image-caption loss on rendered synthetic scenes and
  their one-sentence captions, plus a per-patch loss on the feature layer LLaVA reads
  (``vision_feature_layer``): each patch token predicts the colour and the shape in its own grid
  cell (a random tower carries colour but little shape and position, docs/demo.md).
* **LLM** (``llm/``, a tiny ``Qwen2ForCausalLM`` with the ``tiny`` tokenizer): next-token loss on
  the demo's training conversations with the image replaced by its caption — stage-1 caption
  requests (the answer repeats the description) and stage-2 questions (MCQ, yes/no, short answers,
  multi-turn, text-only), tokenised exactly as training tokenises them. It learns the answer
  formats from text; the demo's training then has to teach both models to read the same facts from
  image tokens. ``--lookup-share`` mixes in option-lookup drills (text MCQs whose question names
  the answer: "Which option says red?"), the MCQ format without the scene.

Everything is seeded; data are drawn from the generator's own samplers in fixed chunks, so the
result does not depend on the number of worker processes (it does depend on the device: CPU and
CUDA kernels round differently).

Usage::

    python tools/pretrain_tiny_components.py --out tg_llava_eval/demo_components --device cuda
    python tools/pretrain_tiny_components.py --out /tmp/parts --llm-steps 200 --clip-steps 100   # smoke run
    python tools/pretrain_tiny_components.py --out /tmp/more --parts llm --llm-init DIR/llm --seed 1  # continue

Output: ``<out>/clip/`` and ``<out>/llm/`` (``save_pretrained`` directories with their tokenizers)
and ``<out>/pretraining.json`` (command, settings, device, versions, learning curves).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch import nn
from transformers import CLIPConfig, CLIPModel, Qwen2ForCausalLM, get_cosine_schedule_with_warmup
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from tg_llava_eval.checkpoints.creating import build_tokenizers, config_for_tokenizers
from tg_llava_eval.demo import DemoSettings
from tg_llava_eval.demo.synthetic.dataset import (
    MULTI_TURN_FRACTION,
    TEXT_ONLY_FRACTION,
    draw_caption_row,
    draw_instruction_row,
    held_out_signatures,
    make_test_items,
    with_scene_in_words,
)
from tg_llava_eval.demo.synthetic.questions import Question, as_mcq, instruction_text
from tg_llava_eval.demo.synthetic.scenes import COLOURS, SHAPES, render_scene
from tg_llava_eval.processing import IGNORE_INDEX, TGLlavaProcessor, tokenize_segments
from tg_llava_eval.variants import get_variant

logger = logging.getLogger("tools.pretrain_tiny_components")

#: The preset whose sizes, template and tokenizers the parts have (``tiny-baseline`` shares them).
VARIANT = "tiny"
#: Grid of the demo's scenes (``generate_synthetic_dataset``'s default).
GRID = 2
#: Rows drawn per chunk of the data pools; chunk ``i`` has its own random stream.
CHUNK = 2000
#: The Trainer's default ``max_grad_norm``.
MAX_GRAD_NORM = 1.0
#: Share of the LLM pool that is stage-1 caption requests (the rest: stage-2 rows).
CAPTION_SHARE = 0.3
#: Question texts of the option-lookup drills (``{}``: the option's text). In the quoted form the
#: tiny BPE splits the word into other tokens than the option's (``"red"`` -> ``"``, ``re``, ``d``,
#: ``"``; the option has `` red``): a harder drill, kept because the committed LLM was trained on
#: these three forms.
LOOKUP_QUESTIONS = ('Which option is "{}"?', "Which option says {}?", "The answer is {}. Which option is it?")
#: Vocabularies of the option-lookup drills: what the demo's MCQ options are made of.
LOOKUP_VOCABULARIES: dict[str, tuple[str, ...]] = {
    "colour": tuple(sorted(COLOURS)), "shape": tuple(SHAPES), "count": tuple(str(n) for n in range(GRID * GRID + 1))}
#: Option-lookup drills per vocabulary in the evaluation (their own random stream; the drills are
#: few enough that these measure the learned format, not generalisation).
LOOKUP_EVAL_ITEMS = 60
#: Rows scored per forward pass when evaluating.
EVAL_BATCH = 256
#: CLIP items held out for evaluation: the pool's last ones, never trained on.
CLIP_EVAL_ITEMS = 1024


@dataclasses.dataclass(frozen=True)
class Parts:
    """Tokenizers, configs and the processor of the ``tiny`` preset."""

    tokenizer: Any
    guide_tokenizer: Any
    text_config: Any
    clip_config: CLIPConfig
    processor: TGLlavaProcessor
    vision_feature_layer: int


def build_parts(tokenizers: Path | None) -> Parts:
    """The preset's tokenizers (built locally, or loaded from ``tokenizers/{llm,clip}``) and configs."""
    variant = get_variant(VARIANT)
    if tokenizers is not None:
        tokenizer, guide_tokenizer = build_tokenizers(variant, tokenizers / "llm", tokenizers / "clip")
    else:
        tokenizer, guide_tokenizer = build_tokenizers(variant)
    config = config_for_tokenizers(variant, tokenizer, guide_tokenizer)
    clip_config = CLIPConfig(text_config=config.guide_config.to_dict(), vision_config=config.vision_config.to_dict(),
                             projection_dim=config.vision_config.projection_dim)
    processor = TGLlavaProcessor.from_config(config, tokenizer, guide_tokenizer)
    return Parts(tokenizer, guide_tokenizer, config.text_config, clip_config, processor, config.vision_feature_layer)


# ---------------------------------------------------------------------------------------------
# Data pools (drawn in worker processes, chunk by chunk)
# ---------------------------------------------------------------------------------------------

#: What the (forked) workers read: set by :func:`main` before the pools are drawn.
_WORKER: dict[str, Any] = {}


def _chunk_rng(part: str, seed: int, chunk: int) -> random.Random:
    return random.Random(f"tiny-components:{part}:{seed}:{chunk}")


def _tokenized(processor: TGLlavaProcessor, conversations: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, labels)`` of a text conversation, as training tokenises it (no guide needed)."""
    input_ids, labels = tokenize_segments(processor.tokenizer, processor.training_segments(conversations, False))
    return np.asarray(input_ids, np.int32), np.asarray(labels, np.int32)


def lookup_conversation(rng: random.Random, vocabulary: str | None = None) -> list[dict[str, str]]:
    """An option-lookup drill: a text-only MCQ whose question names the answer's text.

    The demo's MCQs ask the model to find the option that holds what it read from the image and to
    answer with that option's letter; the drill isolates the second hop (find the named text among
    the options, answer its letter) on the same vocabularies and in the same format, as the
    MCQ-format text in a real LLM's instruction data does. No scene is involved.

    Args:
        rng: randomness for the vocabulary (unless given), the answer, the options and the wording.
        vocabulary: a key of :data:`LOOKUP_VOCABULARIES`; default drawn uniformly.

    Returns:
        The two turns (human: question, options, ``questions.MCQ_SUFFIX``; gpt: the letter).
    """
    if vocabulary is None:
        vocabulary = rng.choice(tuple(LOOKUP_VOCABULARIES))
    words = list(LOOKUP_VOCABULARIES[vocabulary])
    answer = rng.choice(words)
    options, letter = as_mcq(rng, answer, words)
    question = Question("mcq", f"lookup_{vocabulary}", rng.choice(LOOKUP_QUESTIONS).format(answer), options, letter,
                        answer)
    return [{"from": "human", "value": instruction_text(question)}, {"from": "gpt", "value": letter}]


def _llm_chunk(chunk: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``CHUNK`` tokenised text conversations: ``(input_ids, labels)`` as int32 arrays."""
    rng = _chunk_rng("llm", _WORKER["seed"], chunk)
    processor, held_out = _WORKER["processor"], _WORKER["held_out"]
    rows = []
    for _ in range(CHUNK):
        draw = rng.random()
        if draw < CAPTION_SHARE:
            scene, conversations = draw_caption_row(rng, grid=GRID, held_out=held_out)
        elif draw >= 1.0 - _WORKER["lookup_share"]:  # the top of the range: --lookup-share drills
            scene, conversations = None, lookup_conversation(rng)
        else:
            # Rows opened by an MCQ question beyond the stage-2 share (--mcq-share): the option-letter
            # lookup is the format the tiny LLM learns last (docs/demo.md).
            mcq = draw < CAPTION_SHARE + _WORKER["mcq_share"]
            scene, conversations = draw_instruction_row(
                rng, grid=GRID, held_out=held_out, multi_turn_fraction=MULTI_TURN_FRACTION,
                text_only_fraction=0.0 if mcq else TEXT_ONLY_FRACTION, kind="mcq" if mcq else None)
        if scene is not None:
            conversations = with_scene_in_words(conversations, scene)
        rows.append(_tokenized(processor, conversations))
    return rows


def _cell_labels(scene) -> tuple[list[int], list[int]]:
    """Per cell (row-major): colour and shape indices, 0 = empty cell."""
    colours, shapes = sorted(COLOURS), list(SHAPES)
    return ([0 if c is None else 1 + colours.index(c.colour) for c in scene.cells],
            [0 if c is None else 1 + shapes.index(c.shape) for c in scene.cells])


def _clip_chunk(chunk: int) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """``CHUNK`` rendered scenes: uint8 images ``[n, S, S, 3]``, captions, cell colours/shapes ``[n, cells]``."""
    rng = _chunk_rng("clip", _WORKER["seed"], chunk)
    images, captions, colours, shapes = [], [], [], []
    for _ in range(CHUNK):
        scene, _ = draw_caption_row(rng, grid=GRID, held_out=_WORKER["held_out"])
        images.append(np.asarray(render_scene(scene, _WORKER["image_size"]), np.uint8))
        captions.append(scene.caption())
        cell_colours, cell_shapes = _cell_labels(scene)
        colours.append(cell_colours)
        shapes.append(cell_shapes)
    return np.stack(images), captions, np.asarray(colours, np.int64), np.asarray(shapes, np.int64)


def _pool(fn, n_rows: int, workers: int) -> list:
    """``fn(chunk)`` for enough chunks to hold ``n_rows`` rows, in chunk order."""
    chunks = list(range(math.ceil(n_rows / CHUNK)))
    if workers <= 1:
        return [fn(chunk) for chunk in chunks]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(fn, chunks)


# ---------------------------------------------------------------------------------------------
# LLM
# ---------------------------------------------------------------------------------------------


def _pad(rows: list[np.ndarray], value: int, device: torch.device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out).to(device)


def _llm_held_out(parts: Parts) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(label, input_ids, labels)``: the demo's held-out questions with the scene written out
    (label ``kind/category``) and option-lookup drills (``lookup/<vocabulary>``)."""
    settings = DemoSettings()
    items = []
    for kind in ("mcq", "yorn", "vqa"):
        for item in make_test_items(kind, settings.n_test, seed=settings.seed, grid=GRID,
                                    image_size=settings.image_size):
            conversation = with_scene_in_words(
                [{"from": "human", "value": f"<image>\n{instruction_text(item.question)}"},
                 {"from": "gpt", "value": item.question.answer}], item.scene)
            items.append((f"{kind}/{item.question.category}", *_tokenized(parts.processor, conversation)))
    rng = random.Random("tiny-components:lookup-eval")
    for vocabulary in LOOKUP_VOCABULARIES:
        for _ in range(LOOKUP_EVAL_ITEMS):
            items.append((f"lookup/{vocabulary}", *_tokenized(parts.processor, lookup_conversation(rng, vocabulary))))
    return items


@torch.no_grad()
def _llm_accuracy(model, items, pad_id: int, device: torch.device) -> dict[str, float]:
    """Teacher-forced first-answer-token accuracy (%) per label (``kind/category``) and per kind."""
    model.eval()
    right: dict[str, list[bool]] = collections.defaultdict(list)
    for start in range(0, len(items), EVAL_BATCH):
        chunk = items[start:start + EVAL_BATCH]
        input_ids = _pad([ids for _, ids, _ in chunk], pad_id, device)
        labels = _pad([lab for _, _, lab in chunk], IGNORE_INDEX, device)
        logits = model(input_ids=input_ids, attention_mask=(input_ids != pad_id) | (labels != IGNORE_INDEX)).logits
        for row, (label, _, _) in enumerate(chunk):
            first = int((labels[row] != IGNORE_INDEX).nonzero()[0])
            hit = bool(logits[row, first - 1].argmax() == labels[row, first])
            right[label].append(hit)
            right[label.split("/")[0]].append(hit)
    model.train()
    return {label: round(100 * sum(v) / len(v), 1) for label, v in sorted(right.items())}


def pretrain_llm(parts: Parts, args, device: torch.device,
                 save_to: Path | None = None) -> tuple[Qwen2ForCausalLM, list[dict]]:
    """Next-token training of the tiny LLM on the described conversations; returns the model and its
    curve (and saves it to ``save_to`` at every evaluation point)."""
    start = time.perf_counter()
    pool = [row for rows in _pool(_llm_chunk, args.llm_pool, args.workers) for row in rows]
    logger.info("LLM pool: %d conversations in %.0f s", len(pool), time.perf_counter() - start)
    held_out = _llm_held_out(parts)
    torch.manual_seed(args.seed)
    if args.llm_init is not None:  # a longer pretraining in several runs
        model = Qwen2ForCausalLM.from_pretrained(args.llm_init, dtype=torch.float32).to(device)
    else:
        model = Qwen2ForCausalLM(parts.text_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.llm_lr, weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(args.warmup_ratio * args.llm_steps),
                                                args.llm_steps)
    pad_id = parts.tokenizer.pad_token_id
    order = np.random.default_rng(args.seed)
    curve = []
    model.train()
    start = time.perf_counter()
    for step in range(1, args.llm_steps + 1):
        batch = [pool[i] for i in order.integers(len(pool), size=args.llm_batch)]
        input_ids = _pad([ids for ids, _ in batch], pad_id, device)
        labels = _pad([lab for _, lab in batch], IGNORE_INDEX, device)
        mask = _pad([np.ones(len(ids), np.int32) for ids, _ in batch], 0, device)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.eval_every == 0 or step == args.llm_steps:
            accuracy = _llm_accuracy(model, held_out, pad_id, device)
            curve.append({"step": step, "loss": round(loss.item(), 4),
                          "seconds": round(time.perf_counter() - start, 1), "accuracy": accuracy})
            logger.info("LLM step %d (%.0f s): loss %.3f, held-out %s (per category in the record)", step,
                        curve[-1]["seconds"], loss.item(), {k: v for k, v in accuracy.items() if "/" not in k})
            if save_to is not None:  # a usable part at every evaluation point of a long run
                model.save_pretrained(save_to)
    return model.cpu().eval(), curve


# ---------------------------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------------------------


class CellHeads(nn.Module):
    """Linear read-outs of a patch token: the colour and the shape of the patch's grid cell.

    Used only during pretraining (not saved): they make the feature layer LLaVA reads carry what is
    where, as a pretrained CLIP's patch features do.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.colour = nn.Linear(hidden_size, len(COLOURS) + 1)
        self.shape = nn.Linear(hidden_size, len(SHAPES) + 1)


def _patch_cells(image_size: int, patch_size: int) -> torch.Tensor:
    """``[patches]``: the row-major grid cell of each row-major patch."""
    side = image_size // patch_size
    rows = torch.arange(side).repeat_interleave(side)
    cols = torch.arange(side).repeat(side)
    return (rows * GRID // side) * GRID + cols * GRID // side


class ClipData:
    """The CLIP pool on ``device``: normalised pixels come from uint8 images batch by batch."""

    def __init__(self, chunks, parts: Parts, device: torch.device):
        self.images = torch.from_numpy(np.concatenate([c[0] for c in chunks])).to(device)
        self.captions = [caption for c in chunks for caption in c[1]]
        self.colours = torch.from_numpy(np.concatenate([c[2] for c in chunks])).to(device)
        self.shapes = torch.from_numpy(np.concatenate([c[3] for c in chunks])).to(device)
        self.mean = torch.tensor(OPENAI_CLIP_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(OPENAI_CLIP_STD, device=device).view(1, 3, 1, 1)
        self.guide_tokenizer = parts.guide_tokenizer
        self.max_length = parts.clip_config.text_config.max_position_embeddings
        self.device = device

    def __len__(self) -> int:
        return len(self.captions)

    def pixels(self, index: torch.Tensor) -> torch.Tensor:
        """``[n, 3, S, S]`` CLIP-normalised pixels (what the processor gives a square image of side S)."""
        return (self.images[index].permute(0, 3, 1, 2).float() / 255 - self.mean) / self.std

    def text(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tokenised captions (padded to the longest, cut at the text tower's positions)."""
        encoded = self.guide_tokenizer([self.captions[i] for i in index.tolist()], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in encoded.items()}


def check_pixels(parts: Parts, data: ClipData) -> None:
    """The on-device normalisation equals the processor's preprocessing (a few images)."""
    from PIL import Image

    index = torch.arange(4, device=data.device)
    ours = data.pixels(index).cpu()
    for i in range(len(index)):
        image = Image.fromarray(data.images[i].cpu().numpy())
        theirs = parts.processor.preprocess_image(image).pixel_values
        if not torch.allclose(ours[i], theirs, atol=1e-5):
            raise RuntimeError(f"pixel normalisation differs from the processor's (max {(ours[i] - theirs).abs().max()})")


def _clip_losses(model: CLIPModel, heads: CellHeads, data: ClipData, index: torch.Tensor, cells: torch.Tensor,
                 feature_layer: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Contrastive loss, per-patch cell loss, and in-batch accuracies (retrieval, colour, shape)."""
    out = model(pixel_values=data.pixels(index), **data.text(index), return_loss=True, output_hidden_states=True)
    patches = out.vision_model_output.hidden_states[feature_layer][:, 1:]
    colour_logits, shape_logits = heads.colour(patches), heads.shape(patches)
    colour_target, shape_target = data.colours[index][:, cells], data.shapes[index][:, cells]
    cell_loss = (nn.functional.cross_entropy(colour_logits.flatten(0, 1), colour_target.flatten())
                 + nn.functional.cross_entropy(shape_logits.flatten(0, 1), shape_target.flatten()))
    target = torch.arange(len(index), device=index.device)
    metrics = {"retrieval": 100 * (out.logits_per_image.argmax(-1) == target).float().mean().item(),
               "colour": 100 * (colour_logits.argmax(-1) == colour_target).float().mean().item(),
               "shape": 100 * (shape_logits.argmax(-1) == shape_target).float().mean().item()}
    return out.loss, cell_loss, metrics


def pretrain_clip(parts: Parts, args, device: torch.device) -> tuple[CLIPModel, list[dict]]:
    """Contrastive + per-patch training of the tiny CLIP; returns the model and its curve."""
    start = time.perf_counter()
    data = ClipData(_pool(_clip_chunk, args.clip_pool + CLIP_EVAL_ITEMS, args.workers), parts, device)
    check_pixels(parts, data)
    logger.info("CLIP pool: %d images in %.0f s", len(data), time.perf_counter() - start)
    train_size = len(data) - CLIP_EVAL_ITEMS
    eval_index = torch.arange(train_size, len(data), device=device)
    vision = parts.clip_config.vision_config
    cells = _patch_cells(vision.image_size, vision.patch_size).to(device)
    torch.manual_seed(args.seed)
    model = CLIPModel(parts.clip_config).to(device)
    heads = CellHeads(vision.hidden_size).to(device)
    parameters = [*model.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.clip_lr, weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(args.warmup_ratio * args.clip_steps),
                                                args.clip_steps)
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    curve = []
    start = time.perf_counter()
    for step in range(1, args.clip_steps + 1):
        index = torch.randint(train_size, (args.clip_batch,), generator=generator).to(device)
        contrastive, cell, _ = _clip_losses(model, heads, data, index, cells, parts.vision_feature_layer)
        (contrastive + cell).backward()
        nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.eval_every == 0 or step == args.clip_steps:
            model.eval()
            with torch.no_grad():
                # Retrieval among EVAL_BATCH held-out images, averaged over the held-out blocks.
                blocks = [_clip_losses(model, heads, data, eval_index[i:i + EVAL_BATCH], cells,
                                       parts.vision_feature_layer)[2]
                          for i in range(0, CLIP_EVAL_ITEMS, EVAL_BATCH)]
            model.train()
            metrics = {k: round(sum(b[k] for b in blocks) / len(blocks), 1) for k in blocks[0]}
            curve.append({"step": step, "contrastive_loss": round(contrastive.item(), 4),
                          "cell_loss": round(cell.item(), 4), "seconds": round(time.perf_counter() - start, 1),
                          "held_out": metrics})
            logger.info("CLIP step %d (%.0f s): contrastive %.3f, cell %.3f, held-out %s", step,
                        curve[-1]["seconds"], contrastive.item(), cell.item(), metrics)
    return model.cpu().eval(), curve


# ---------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    """``"<model name> (<n> cores), <t> torch threads"``, for the record."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    name = names[0] if names else platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads"


def _init_record(llm_init: Path | None) -> dict[str, Any]:
    """``{"init": record}`` for a run that continued ``llm_init``: the record of the run that made it
    (from the ``pretraining.json`` beside it, itself with its ``init``), so the committed record
    holds the whole chain of runs; empty for a run from random weights."""
    if llm_init is None:
        return {}
    previous = llm_init.parent / "pretraining.json"
    entry = json.loads(previous.read_text()).get("llm") if previous.exists() else None
    if entry is None:
        logger.warning("%s: no record of how %s was made; the chain of runs is cut here", previous, llm_init)
    return {"init": {"llm": str(llm_init), "record": entry}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for clip/, llm/ and pretraining.json")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes drawing the data")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--tokenizers", type=Path, help="load the tokenizers from DIR/llm and DIR/clip "
                        "instead of building them (the guide's BPE needs open-clip-torch installed)")
    parser.add_argument("--parts", default="clip,llm", help="which parts to train (comma-separated)")
    parser.add_argument("--llm-steps", type=int, default=20000)
    parser.add_argument("--llm-batch", type=int, default=256)
    parser.add_argument("--llm-lr", type=float, default=2e-3)
    parser.add_argument("--llm-pool", type=int, default=400_000, help="conversations drawn for the LLM")
    parser.add_argument("--llm-init", type=Path, help="continue from this LLM (a previous run's llm/) "
                        "instead of random weights; use another --seed to draw new conversations")
    parser.add_argument("--mcq-share", type=float, default=0.0,
                        help="extra share of the LLM pool opened by an MCQ question (the rest: captions, stage-2 rows)")
    parser.add_argument("--lookup-share", type=float, default=0.0,
                        help="share of the LLM pool that is option-lookup drills (text MCQs naming the answer)")
    parser.add_argument("--clip-steps", type=int, default=5000)
    parser.add_argument("--clip-batch", type=int, default=512)
    parser.add_argument("--clip-lr", type=float, default=1e-3)
    parser.add_argument("--clip-pool", type=int, default=200_000, help="scenes rendered for CLIP")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--warmup-ratio", type=float, default=0.03)
    parser.add_argument("--eval-every", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts_to_train = set(args.parts.split(","))
    unknown = parts_to_train - {"clip", "llm"}
    if unknown:
        parser.error(f"--parts: unknown part(s) {sorted(unknown)}; choose from clip, llm")

    parts = build_parts(args.tokenizers)
    settings = DemoSettings()
    if not 0.0 <= args.mcq_share <= 1.0 - CAPTION_SHARE:
        parser.error(f"--mcq-share {args.mcq_share}: must be in [0, {1.0 - CAPTION_SHARE}]")
    if not 0.0 <= args.lookup_share <= 1.0 - CAPTION_SHARE - args.mcq_share:
        parser.error(f"--lookup-share {args.lookup_share}: must be in [0, {1.0 - CAPTION_SHARE - args.mcq_share}] "
                     f"(with --mcq-share {args.mcq_share})")
    _WORKER.update(seed=args.seed, processor=parts.processor, image_size=settings.image_size, mcq_share=args.mcq_share,
                   lookup_share=args.lookup_share,
                   held_out=held_out_signatures(seed=settings.seed, n_test=settings.n_test, grid=GRID,
                                                image_size=settings.image_size))
    args.out.mkdir(parents=True, exist_ok=True)
    run = {
        "command": " ".join(["python", "tools/pretrain_tiny_components.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "held_out_layouts_excluded": len(_WORKER["held_out"]),
    }
    # One entry per part, so that parts trained by separate runs keep their own record.
    record_path = args.out / "pretraining.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if "clip" in parts_to_train:
        clip, curve = pretrain_clip(parts, args, device)
        clip.save_pretrained(args.out / "clip")
        parts.guide_tokenizer.save_pretrained(args.out / "clip")
        record["clip"] = {**run, "curve": curve}
    if "llm" in parts_to_train:
        parts.tokenizer.save_pretrained(args.out / "llm")
        llm, curve = pretrain_llm(parts, args, device, save_to=args.out / "llm")
        llm.save_pretrained(args.out / "llm")
        record["llm"] = {**run, "curve": curve, **_init_record(args.llm_init)}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
