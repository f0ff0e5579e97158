"""TGLlavaEngine on a tiny checkpoint: batching parity, the vision cache, bad input isolation."""

from __future__ import annotations

import io
import math

import pytest
import torch
from PIL import Image

from tg_llava_eval.inference import GenerationRequest, LoglikelihoodRequest, TGLlavaEngine


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> TGLlavaEngine:
    engine = TGLlavaEngine.from_pretrained(tiny_checkpoint, device="cpu")
    # A fresh model's TG-FOM is zero (official init); make text guidance matter for these tests.
    torch.manual_seed(3)
    with torch.no_grad():
        engine.model.text_guided_mask.output_projection.weight.normal_(0, 0.5)
    return engine


def images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (40 + 9 * i, 30 + 5 * i), (50 * i % 255, 120, 200 - 30 * i)) for i in range(n)]


QUESTIONS = [
    "What colour is the shape in the top-left corner?",
    "Is there a red circle?",
    "Count the squares.",
    "Which shape is at the bottom?\nA. circle\nB. square\nC. star",
    "Describe the image.",
    "Answer yes or no: is it blue?",
]


def requests(imgs, max_new_tokens=8):
    return [
        GenerationRequest(prompt=q, images=[imgs[i % len(imgs)]] if i != 2 else [], max_new_tokens=max_new_tokens,
                          request_id=f"row{i}")
        for i, q in enumerate(QUESTIONS)
    ]


def test_batch_1_and_4_give_identical_tokens(engine):
    reqs = requests(images(3))
    one = engine.generate(reqs, batch_size=1)
    four = engine.generate(reqs, batch_size=4)
    assert [r.error for r in one] == [None] * len(reqs)
    assert [r.text for r in one] == [r.text for r in four]
    assert all(r.num_generated_tokens > 0 for r in one)


def test_cache_on_off_identical_and_tower_runs_once_per_image(tiny_checkpoint, engine):
    imgs = images(2)
    reqs = [GenerationRequest(prompt=q, images=[imgs[i % 2]], max_new_tokens=6) for i, q in enumerate(QUESTIONS[:4] * 2)]
    cached = TGLlavaEngine(engine.model, engine.processor, cache_vision=True)
    uncached = TGLlavaEngine(engine.model, engine.processor, cache_vision=False)
    with_cache = cached.generate(reqs, batch_size=3)
    without = uncached.generate(reqs, batch_size=3)
    assert [r.text for r in with_cache] == [r.text for r in without]
    assert cached.cache_info()["tower_calls"] == 2  # two distinct images, eight questions
    assert uncached.cache_info()["tower_calls"] == len(reqs)


def test_cache_keys_on_content_not_object(engine):
    cache_engine = TGLlavaEngine(engine.model, engine.processor, cache_vision=True)
    img = images(1)[0]
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    same_object = [GenerationRequest("Is there a circle?", images=[img.copy()], max_new_tokens=2) for _ in range(3)]
    cache_engine.generate(same_object)
    assert cache_engine.cache_info()["tower_calls"] == 1


def test_bad_requests_are_reported_and_do_not_stop_others(engine, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    good = images(2)
    reqs = [
        GenerationRequest("What is it?", images=[tmp_path / "missing.png"], request_id="missing"),
        GenerationRequest("What is it?", images=[corrupt], request_id="corrupt"),
        GenerationRequest("What is it?", images=[empty], request_id="empty"),
        GenerationRequest("   ", images=[good[0]], request_id="blank"),
        GenerationRequest("Compare <image> and <image>", images=[good[0]], request_id="markers"),
        GenerationRequest("Compare them", images=good, request_id="two-images"),
        GenerationRequest("What is it?", images=[good[1]], max_new_tokens=4, request_id="ok"),
    ]
    results = engine.generate(reqs, batch_size=4)
    errors = {r.request_id: res.error for r, res in zip(reqs, results)}
    assert "missing.png" in errors["missing"] and "not found" in errors["missing"]
    assert "corrupt.png" in errors["corrupt"]
    assert "empty.jpg" in errors["empty"]
    assert "empty question" in errors["blank"]
    assert "2" in errors["markers"] and "marker" in errors["markers"]
    assert "single-image" in errors["two-images"]
    assert errors["ok"] is None and results[-1].num_generated_tokens > 0
    for request_id, error in errors.items():
        if request_id != "ok":
            assert error.startswith(f"request {request_id}:")


def test_long_question_truncates_the_guide_and_still_answers(engine):
    question = " ".join(["where is the small red circle relative to the blue square"] * 25)  # ~500 LLM tokens
    (result,) = engine.generate([GenerationRequest(question, images=images(1), max_new_tokens=3)])
    assert result.error is None and result.num_prompt_tokens > 500
    guide = engine.processor.tokenize_guide(question)
    assert len(guide) == engine.model.config.guide_max_length
    assert guide[-1] == engine.processor.guide_tokenizer.eos_token_id


def test_prompt_over_max_length_is_an_error(engine):
    short = TGLlavaEngine(engine.model, engine.processor, max_length=64)
    (result,) = short.generate([GenerationRequest("word " * 80, images=images(1), max_new_tokens=2)])
    assert "max_length=64" in result.error


def test_loglikelihood_matches_the_model_forward(engine):
    img = images(1)[0]
    request = LoglikelihoodRequest("Is there a red circle?", "Yes, on the left.", images=[img])
    (result,) = engine.loglikelihood([request])
    processor = engine.processor
    prompt = processor.apply_template(request.prompt, has_image=True)
    batch = processor([prompt], [img], [processor.inference_guide_text(request.prompt)],
                      continuations=[request.continuation], padding_side="right")
    with torch.no_grad():
        logits = engine.model(**batch).logits[0]
    labels = batch["labels"][0]
    positions = (labels != -100).nonzero().flatten()
    log_probs = torch.log_softmax(logits[positions - 1].float(), dim=-1)
    expected = log_probs.gather(-1, labels[positions][:, None]).sum()
    assert result.num_tokens == positions.numel()
    assert result.logprob == pytest.approx(float(expected), abs=1e-4)
    batched = engine.loglikelihood([request, LoglikelihoodRequest("Is it blue?", "No", images=[img])], batch_size=2)
    assert batched[0].logprob == pytest.approx(result.logprob, abs=1e-4)


def test_bad_continuations_are_reported_and_do_not_stop_others(engine):
    img = images(1)[0]
    marker = engine.processor.image_token
    results = engine.loglikelihood([
        LoglikelihoodRequest("Is it red?", "", images=[img], request_id="empty"),
        LoglikelihoodRequest("Is it red?", f"Yes {marker}", images=[img], request_id="marker"),
        LoglikelihoodRequest("Is it red?", "Yes", images=[img], request_id="ok"),
    ])
    assert results[0].error == "request empty: bad continuation '' (empty or with an image marker)"
    assert results[1].error.startswith("request marker: bad continuation") and marker in results[1].error
    assert results[0].logprob == -math.inf and results[1].logprob == -math.inf
    assert results[2].error is None and results[2].num_tokens > 0


def test_greedy_flag_follows_the_argmax(engine):
    img = images(1)[0]
    processor = engine.processor
    prompt = processor.apply_template("Describe the image.", has_image=True)
    batch = processor([prompt], [img], [processor.inference_guide_text("Describe the image.")])
    with torch.no_grad():
        ranked = engine.model(**batch).logits[0, -1].argsort(descending=True).tolist()
    vocab = processor.tokenizer
    # The best and a worse single token whose text re-tokenises to itself.
    singles = [t for t in ranked if vocab(vocab.decode([t]), add_special_tokens=False)["input_ids"] == [t]
               and vocab.decode([t]).strip() and t not in vocab.all_special_ids]
    best_rank = ranked.index(singles[0])
    results = engine.loglikelihood([
        LoglikelihoodRequest("Describe the image.", vocab.decode([singles[0]]), images=[img]),
        LoglikelihoodRequest("Describe the image.", vocab.decode([singles[-1]]), images=[img]),
    ])
    assert results[0].is_greedy == (best_rank == 0)
    assert not results[1].is_greedy
    assert results[0].logprob > results[1].logprob
