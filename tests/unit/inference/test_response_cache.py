"""The persistent response cache (:mod:`tg_llava_eval.inference.response_cache`) on the real engine
and the tiny checkpoint: answers come back bit-identical from a reopened file without a model call,
and any change of checkpoint file, setting, request type or request field gives another key.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest
from PIL import Image

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.inference import GenerationRequest, GenerationResult, LoglikelihoodRequest, LoglikelihoodResult, TGLlavaEngine
from tg_llava_eval.inference.response_cache import ResponseCache, cache_file_name, check_cache_dir

SETTINGS = {"conv_template": "qwen_2", "dtype": "torch.float32"}
COLOURS = ("red", "green", "blue")


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> TGLlavaEngine:
    return TGLlavaEngine.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture
def checkpoint_copy(tiny_checkpoint, tmp_path):
    """A private copy of the tiny checkpoint that a test may change."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


class Engine:
    """The engine's two calls, counting the requests that reach the model."""

    def __init__(self, engine: TGLlavaEngine) -> None:
        self.engine = engine
        self.requests = 0

    def generate(self, requests):
        self.requests += len(requests)
        return self.engine.generate(requests, batch_size=len(requests))

    def loglikelihood(self, requests):
        self.requests += len(requests)
        return self.engine.loglikelihood(requests, batch_size=len(requests))


def _image(colour: str) -> Image.Image:
    return Image.new("RGB", (16, 16), colour)


def _generation_requests(max_new_tokens: int = 4) -> list[GenerationRequest]:
    return [
        GenerationRequest(prompt=f"What colour is this {colour} square?", images=[_image(colour)],
                          max_new_tokens=max_new_tokens, stop=("\n",), request_id=f"doc {i}")
        for i, colour in enumerate(COLOURS)
    ]  # fmt: skip


def _loglikelihood_requests() -> list[LoglikelihoodRequest]:
    return [
        LoglikelihoodRequest(prompt="Which colour? A. red B. green", continuation=letter, images=[_image(colour)])
        for colour in COLOURS[:2]
        for letter in "AB"
    ]


def _open(cache_dir, checkpoint, settings=SETTINGS, **kwargs) -> ResponseCache:
    return ResponseCache(cache_dir, checkpoint_dir=checkpoint, settings=settings, **kwargs)


def test_answers_come_back_identical_from_a_reopened_file(engine, tiny_checkpoint, tmp_path):
    spy = Engine(engine)
    first = _open(tmp_path, tiny_checkpoint)
    generated = first.answer("generate_until", _generation_requests(), spy.generate, GenerationResult)
    scored = first.answer("loglikelihood", _loglikelihood_requests(), spy.loglikelihood, LoglikelihoodResult)
    assert spy.requests == 7 and len(first) == 7
    assert first.take_counts("generate_until") == (0, 3)
    first.close()

    again = _open(tmp_path, tiny_checkpoint)  # what the next run (a new process) opens
    assert again.hashed_files == 0  # every checkpoint file's hash came from the (path, size, mtime) table
    assert again.answer("generate_until", _generation_requests(), spy.generate, GenerationResult) == generated
    assert again.answer("loglikelihood", _loglikelihood_requests(), spy.loglikelihood, LoglikelihoodResult) == scored
    assert spy.requests == 7, "a cached request reached the model"
    assert again.take_counts("loglikelihood") == (4, 0)
    assert all(result.text and result.num_generated_tokens > 0 for result in generated)
    # floats are stored at repr precision: the bits survive
    assert [r.logprob.hex() for r in scored] == [
        r.logprob.hex() for r in again.answer("loglikelihood", _loglikelihood_requests(), spy.loglikelihood,
                                              LoglikelihoodResult)
    ]  # fmt: skip


def test_a_partly_cached_batch_computes_only_the_rest(engine, tiny_checkpoint, tmp_path):
    spy = Engine(engine)
    cache = _open(tmp_path, tiny_checkpoint)
    requests = _generation_requests()
    cache.answer("generate_until", requests[:1], spy.generate, GenerationResult)
    results = cache.answer("generate_until", requests, spy.generate, GenerationResult)
    assert spy.requests == 1 + 2
    assert results == engine.generate(requests, batch_size=1)


def test_settings_request_type_and_request_fields_change_the_key(tiny_checkpoint, tmp_path):
    cache = _open(tmp_path, tiny_checkpoint)
    base = _generation_requests()[0]
    key = cache.request_key("generate_until", base)
    assert key == cache.request_key("generate_until", _generation_requests()[0])
    # the label of a request is not part of it
    assert key == cache.request_key("generate_until", GenerationRequest(**{**vars(base), "request_id": "other"}))
    changed = {
        "max_new_tokens": 5, "temperature": 0.7, "top_p": 0.9, "num_beams": 2, "stop": (".",),
        "prompt": base.prompt + " ", "guide_text": "square", "history": (("hi", "hello"),),
        "images": [_image("blue")],
    }  # fmt: skip
    keys = {cache.request_key("generate_until", GenerationRequest(**{**vars(base), name: value}))
            for name, value in changed.items()}  # fmt: skip
    assert len(keys) == len(changed) and key not in keys
    assert cache.request_key("generate_until_multi_round", base) != key
    assert _open(tmp_path, tiny_checkpoint, settings={**SETTINGS, "dtype": "torch.bfloat16"}).request_key(
        "generate_until", base) != key  # fmt: skip
    assert _open(tmp_path, tiny_checkpoint, settings={**SETTINGS, "max_length": 64}).request_key(
        "generate_until", base) != key  # fmt: skip
    # an image the engine cannot read gives no key (the request fails there and is not stored)
    assert cache.request_key("generate_until", GenerationRequest(**{**vars(base), "images": [str(tmp_path / "no.png")]})) is None


def test_a_changed_checkpoint_file_changes_the_fingerprint(checkpoint_copy, tmp_path):
    cache_dir = tmp_path / "cache"
    first = _open(cache_dir, checkpoint_copy)
    assert first.hashed_files == len([p for p in checkpoint_copy.rglob("*") if p.is_file()])
    # same size, other bytes: a retrained checkpoint saved over the old one
    weights = checkpoint_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    second = _open(cache_dir, checkpoint_copy)
    assert second.hashed_files == 1 and second.checkpoint_fingerprint != first.checkpoint_fingerprint
    assert second.model_key != first.model_key
    # a changed config, and an added file, also change it
    config = checkpoint_copy / "config.json"
    config.write_text(config.read_text() + "\n")
    third = _open(cache_dir, checkpoint_copy)
    (checkpoint_copy / "extra.json").write_text("{}")
    fourth = _open(cache_dir, checkpoint_copy)
    assert len({first.model_key, second.model_key, third.model_key, fourth.model_key}) == 4
    # hidden folders (.cache, .git) are not part of the checkpoint
    (checkpoint_copy / ".cache").mkdir()
    (checkpoint_copy / ".cache" / "lock").write_text("x")
    assert _open(cache_dir, checkpoint_copy).model_key == fourth.model_key


def test_an_unchanged_size_and_mtime_reuses_the_stored_hash(checkpoint_copy, tmp_path):
    """The documented trade-off: the content is trusted while (path, size, mtime) is unchanged, so
    a 15 GB checkpoint is hashed once."""
    cache_dir = tmp_path / "cache"
    first = _open(cache_dir, checkpoint_copy)
    weights = checkpoint_copy / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = _open(cache_dir, checkpoint_copy)
    assert again.hashed_files == 0 and again.checkpoint_fingerprint == first.checkpoint_fingerprint


def test_failed_requests_are_not_stored(engine, tiny_checkpoint, tmp_path):
    spy = Engine(engine)
    cache = _open(tmp_path, tiny_checkpoint)
    bad = [GenerationRequest(prompt="   ", images=[_image("red")]), _generation_requests()[0]]
    results = cache.answer("generate_until", bad, spy.generate, GenerationResult)
    assert results[0].error and "empty question" in results[0].error and results[1].error is None
    assert len(cache) == 1
    cache.answer("generate_until", bad, spy.generate, GenerationResult)
    assert spy.requests == 2 + 1  # the failed one is asked again, the answered one is not


def test_each_batch_is_one_transaction(engine, tiny_checkpoint, tmp_path):
    """A batch whose computation dies leaves the earlier batches and nothing of its own."""
    spy = Engine(engine)
    cache = _open(tmp_path, tiny_checkpoint)
    requests = _generation_requests()
    cache.answer("generate_until", requests[:2], spy.generate, GenerationResult)

    def dies(pending):
        spy.generate(pending)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.answer("generate_until", requests[2:], dies, GenerationResult)
    with sqlite3.connect(cache.path) as reader:
        assert reader.execute("SELECT count(*) FROM responses").fetchone() == (2,)


def test_one_file_per_rank(tiny_checkpoint, tmp_path):
    paths = {_open(tmp_path, tiny_checkpoint, rank=r, world_size=2).path for r in range(2)}
    assert paths == {tmp_path / cache_file_name(0, 2), tmp_path / cache_file_name(1, 2)}
    assert cache_file_name(0, 1) == "tg_llava_responses.rank0-of-1.sqlite"


def test_cache_dir_is_checked(tmp_path):
    assert check_cache_dir(tmp_path / "new" / "folder").is_dir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for value, needle in ((a_file, "is a file"), (a_file / "sub", "cannot create"), (True, "expected the path")):
        with pytest.raises(TGLlavaConfigError) as error:
            check_cache_dir(value, argument="model_args cache_dir")
        message = str(error.value)
        assert message.startswith("model_args cache_dir=") and needle in message and "\n" not in message
