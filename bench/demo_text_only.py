"""How fast the demo's tiny LLM learns the benchmark's question formats with no image (prints JSON).

``make demo`` must show trained tiny models above chance; docs/demo.md records that they stay at
chance. This benchmark separates the language side from the vision side: the preset's LLM alone
(random init, the preset's sizes, template and tokenizer) is trained on the synthetic benchmark's
questions with the scene *written out* before each question ("A red circle in the top-left and a
blue star in the bottom-right."), so every answer can be read off the prompt. If a format (yes/no,
MCQ) is not learned here, no change on the vision side can make the demo learn it either; the
curve also tells how long a text pretraining of the tiny LLM would have to run.

What runs: fresh scenes and questions from the generator's own samplers (every kind and category,
one question per sample), AdamW + cosine schedule with warmup (the stage-2 recipe's warmup ratio
and weight decay), gradient clipping at 1.0. Every ``--eval-every`` steps a fixed held-out set is
scored teacher-forced (argmax at the answer's first token), per kind and per kind/category.

Usage::

    python bench/demo_text_only.py [--variant tiny] [--steps 2000] [--eval-every 250] [--batch 16]
        [--lr 2e-3] [--held-out 600] [--threads 1] [--seed 0]

Output::

    {"benchmark": "demo_text_only", "variant": ..., "steps": ..., "llm": {text config sizes},
     "curve": [{"step": s, "loss": l, "seconds": t, "kinds": {"mcq": a, ...},
                "accuracy": {"mcq/colour_at": a, ...}}, ...]}
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import random
import time

import torch
from bench_common import keep_stdout_for_json  # noqa: E402 - bench/ is the script folder
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

from tg_llava_eval.checkpoints.creating import build_tokenizers, config_for_tokenizers
from tg_llava_eval.conversation import ASSISTANT, USER, Message
from tg_llava_eval.demo.synthetic.dataset import with_scene_in_words
from tg_llava_eval.demo.synthetic.questions import (
    KIND_CATEGORIES,
    SINGLE_SHAPE_CATEGORIES,
    instruction_text,
    make_question,
)
from tg_llava_eval.demo.synthetic.scenes import sample_scene
from tg_llava_eval.processing import IGNORE_INDEX, get_template, tokenize_segments
from tg_llava_eval.training.recipe import get_recipe
from tg_llava_eval.variants import get_variant

logger = logging.getLogger("bench.demo_text_only")
#: Held-out items scored per forward pass.
EVAL_BATCH = 50
#: The Trainer's default ``max_grad_norm``.
MAX_GRAD_NORM = 1.0
#: Grid of the demo's scenes (2x2, the generator's default).
GRID = 2
#: Offset of the held-out samples' seeds, far from the training stream's.
HELD_OUT_SEED_OFFSET = 1_000_000


def described_sample(rng: random.Random, template) -> tuple[str, list]:
    """``(kind/category, segments)``: a scene written out, one question about it and its answer,
    rendered by ``template`` into the segments training tokenises."""
    kind = rng.choice(sorted(KIND_CATEGORIES))
    category = rng.choice(KIND_CATEGORIES[kind])
    single = category in SINGLE_SHAPE_CATEGORIES
    scene = sample_scene(rng, grid=GRID, min_shapes=1, max_shapes=1 if single else None)
    question = make_question(scene, rng, kind=kind, category=category)
    turns = with_scene_in_words([{"from": "human", "value": f"<image>\n{instruction_text(question)}"},
                                 {"from": "gpt", "value": question.answer}], scene)
    messages = [Message(USER, turns[0]["value"]), Message(ASSISTANT, turns[1]["value"])]
    return f"{kind}/{category}", template.segments(messages, add_generation_prompt=False)


def encode(tokenizer, samples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Right-padded ``input_ids``, ``labels`` (answer + end of turn, the training tokenisation),
    ``attention_mask``, and each sample's first answer position."""
    rows = [tokenize_segments(tokenizer, segments) for _, segments in samples]
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    return input_ids, labels, mask, [next(i for i, label in enumerate(lab) if label != IGNORE_INDEX) for _, lab in rows]


@torch.no_grad()
def evaluate(model, tokenizer, held_out) -> tuple[dict[str, float], dict[str, float]]:
    """Teacher-forced first-answer-token accuracy (%) per kind and per kind/category."""
    model.eval()
    right: dict[str, list[bool]] = collections.defaultdict(list)
    for start in range(0, len(held_out), EVAL_BATCH):
        chunk = held_out[start:start + EVAL_BATCH]
        input_ids, _, mask, answer_starts = encode(tokenizer, chunk)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        for row, ((name, _), n) in enumerate(zip(chunk, answer_starts)):
            right[name].append(int(logits[row, n - 1].argmax()) == int(input_ids[row, n]))
    model.train()
    kinds: dict[str, list[bool]] = collections.defaultdict(list)
    for name, values in right.items():
        kinds[name.split("/")[0]] += values
    percent = lambda values: round(100 * sum(values) / len(values), 1)  # noqa: E731
    return ({k: percent(v) for k, v in sorted(kinds.items())}, {k: percent(v) for k, v in sorted(right.items())})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="tiny", help="tiny preset whose LLM, template and tokenizer are used")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--held-out", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    keep_stdout_for_json()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    variant = get_variant(args.variant)
    tokenizer, guide_tokenizer = build_tokenizers(variant)
    text_config = config_for_tokenizers(variant, tokenizer, guide_tokenizer).text_config
    model = AutoModelForCausalLM.from_config(text_config)
    template = get_template(variant.template)
    recipe = get_recipe("finetune")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=recipe.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(recipe.warmup_ratio * args.steps), args.steps)
    held_out = [described_sample(random.Random(HELD_OUT_SEED_OFFSET + i), template) for i in range(args.held_out)]
    rng = random.Random(args.seed)
    curve = []
    start = time.perf_counter()
    model.train()
    for step in range(1, args.steps + 1):
        input_ids, labels, mask, _ = encode(tokenizer, [described_sample(rng, template) for _ in range(args.batch)])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % args.eval_every == 0 or step == args.steps:
            kinds, accuracy = evaluate(model, tokenizer, held_out)
            curve.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - start, 1),
                          "kinds": kinds, "accuracy": accuracy})
            logger.info("step %d: loss %.3f, %s", step, loss.item(), kinds)
    sizes = {k: getattr(text_config, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                  "num_attention_heads", "vocab_size")}
    print(json.dumps({"benchmark": "demo_text_only", "device": "cpu", "threads": args.threads, "variant": args.variant,
                      "template": template.name, "steps": args.steps, "batch": args.batch, "lr": args.lr,
                      "held_out": args.held_out, "llm": sizes, "curve": curve}, indent=1))


if __name__ == "__main__":
    main()
