"""The look-ahead batcher under VLMEvalKit's real ``infer_data`` loop, with a weightless echo model.

The model answers a row's question with ``"answer to <question>"`` and records each batch it is given,
so the tests see exactly which rows were generated together while VLMEvalKit itself iterates,
shards (``RANK``/``WORLD_SIZE``), resumes from its partial-results pickle and skips rows.
"""

from __future__ import annotations

import functools
import logging

import pandas as pd
import pytest

pytest.importorskip("vlmeval")

from vlmeval.inference import infer_data  # noqa: E402
from vlmeval.smp import dump, load  # noqa: E402

from tg_llava_eval.errors import TGLlavaConfigError  # noqa: E402
from tg_llava_eval.inference import GenerationResult  # noqa: E402
from tg_llava_eval.model_wrappers.vlmevalkit_batching import (  # noqa: E402
    LookAhead,
    Outcome,
    build_row_message,
    check_batch_size,
    generate_together,
)

DATASET = "tg_echo"


class EchoTable:
    """A text dataset as VLMEvalKit sees one: ``data``, ``dump_image``, ``build_prompt``."""

    TYPE = "VQA"
    dataset_name = DATASET

    def __init__(self, rows: int, *, unbuildable=(), questions=None):
        self.data = pd.DataFrame({"index": list(range(rows)),
                                  "question": questions or [f"question {i}" for i in range(rows)]})
        self.unbuildable = set(unbuildable)

    def __len__(self) -> int:
        return len(self.data)

    def dump_image(self, line):
        return []

    def build_prompt(self, line):
        if line["index"] in self.unbuildable:
            raise ValueError(f"row {line['index']} cannot be built")
        return [{"type": "text", "value": line["question"]}]


class EchoModel:
    """The VLMEvalKit model protocol around a :class:`LookAhead`; ``failing`` questions raise when asked."""

    def __init__(self, batch_size: int, failing=()):
        self.batches: list[list[str]] = []
        self.failing = set(failing)
        self.look_ahead = LookAhead(batch_size, functools.partial(build_row_message, self), self.answer_messages)

    def set_dump_image(self, dump_image):
        self.look_ahead.begin(dump_image.__self__)

    def use_custom_prompt(self, dataset):
        return False

    def generate(self, message, dataset=None):
        outcome = self.look_ahead.answer(message, dataset)
        if outcome.error is not None:
            raise outcome.error
        return outcome.text

    def answer_messages(self, messages, dataset):
        questions = [message[0]["value"] for message in messages]
        self.batches.append(questions)
        return [Outcome(error=RuntimeError(q)) if q in self.failing else Outcome(text=f"answer to {q}") for q in questions]


def run_loop(tmp_path, model, table, *, done=(), rank=0, world_size=1, monkeypatch=None):
    """VLMEvalKit's ``infer_data`` over ``table``; ``done`` rows are in its partial-results pickle."""
    if monkeypatch is not None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world_size))
    out_file = tmp_path / f"{rank}{world_size}_{DATASET}.pkl"
    if done:
        dump({i: f"answer to question {i}" for i in done}, str(out_file))
    infer_data(model, model_name="echo", work_dir=str(tmp_path), dataset=table, out_file=str(out_file))
    return load(str(out_file))


def expected(indices):
    return {i: f"answer to question {i}" for i in indices}


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def test_rows_are_generated_in_batches_and_answered_in_order(tmp_path):
    model = EchoModel(8)
    assert run_loop(tmp_path, model, EchoTable(21)) == expected(range(21))
    assert [len(b) for b in model.batches] == [8, 8, 5]
    stats = model.look_ahead.stats
    assert (stats.asked, stats.batches, stats.generated, stats.dropped) == (21, 3, 21, 0)


def test_a_resumed_run_starts_its_first_batch_at_the_first_missing_row(tmp_path):
    model = EchoModel(8)
    assert run_loop(tmp_path, model, EchoTable(21), done=range(10)) == expected(range(21))
    assert model.batches == [[f"question {i}" for i in range(10, 18)], [f"question {i}" for i in range(18, 21)]]


def test_skipped_rows_inside_a_batch_are_dropped(tmp_path):
    model = EchoModel(8)
    assert run_loop(tmp_path, model, EchoTable(21), done=(3, 12)) == expected(range(21))
    assert [len(b) for b in model.batches] == [8, 8, 5]
    assert model.look_ahead.stats.dropped == 2


def test_each_rank_batches_its_own_shard(tmp_path, monkeypatch):
    model = EchoModel(4)
    answers = run_loop(tmp_path, model, EchoTable(13), rank=1, world_size=2, monkeypatch=monkeypatch)
    assert answers == expected(range(1, 13, 2))
    assert model.batches == [[f"question {i}" for i in (1, 3, 5, 7)], [f"question {i}" for i in (9, 11)]]


def test_a_row_whose_prompt_fails_is_left_to_vlmevalkit(tmp_path):
    """The batch stops before it; VLMEvalKit raises on it itself, as without batching."""
    model = EchoModel(8)
    with pytest.raises(ValueError, match="row 5 cannot be built"):
        run_loop(tmp_path, model, EchoTable(21, unbuildable={5}))
    assert model.batches == [[f"question {i}" for i in range(5)]]


def test_a_row_error_is_raised_only_when_that_row_is_asked(tmp_path):
    model = EchoModel(8, failing={"question 3"})
    with pytest.raises(RuntimeError, match="question 3"):
        run_loop(tmp_path, model, EchoTable(21))
    assert (model.look_ahead.stats.asked, len(model.batches)) == (4, 1)


def test_duplicate_questions_get_their_own_answers(tmp_path):
    model = EchoModel(8)
    answers = run_loop(tmp_path, model, EchoTable(6, questions=["same"] * 3 + ["other"] * 3))
    assert answers == {0: "answer to same", 1: "answer to same", 2: "answer to same",
                       3: "answer to other", 4: "answer to other", 5: "answer to other"}
    assert len(model.batches) == 1


def test_a_message_from_no_row_is_answered_alone_and_the_look_ahead_stops(caplog):
    model = EchoModel(8)
    model.look_ahead.begin(EchoTable(21))
    with caplog.at_level(logging.INFO):
        assert model.generate([{"type": "text", "value": "not in the table"}], DATASET) == "answer to not in the table"
    assert "matches no row of this rank's shard" in caplog.text
    assert model.generate([{"type": "text", "value": "question 0"}], DATASET) == "answer to question 0"
    assert [len(b) for b in model.batches] == [1, 1]  # no second search of the whole shard


def test_without_a_dataset_every_message_is_answered_alone():
    model = EchoModel(8)
    model.look_ahead.begin(None)
    assert model.generate([{"type": "text", "value": "question 0"}], DATASET) == "answer to question 0"
    assert model.batches == [["question 0"]]


class FlakyEngine:
    """Fails every call of more than one request, and any call holding the prompt ``"bad"``."""

    def __init__(self):
        self.calls = []

    def generate(self, requests, batch_size=1):
        self.calls.append(len(requests))
        if len(requests) > 1 or requests[0] == "bad":
            raise RuntimeError("out of memory")
        return [GenerationResult(f"answer to {requests[0]}")]


def test_a_failed_batch_is_answered_row_by_row(caplog):
    engine = FlakyEngine()
    with caplog.at_level(logging.WARNING):
        results = generate_together(engine, ["a", "bad", "c"])
    assert engine.calls == [3, 1, 1, 1]
    assert [r.text for r in (results[0], results[2])] == ["answer to a", "answer to c"]
    assert isinstance(results[1], RuntimeError)
    assert "a batch of 3 rows failed (RuntimeError: out of memory); answering them one at a time" in caplog.text
    assert isinstance(generate_together(engine, ["bad"])[0], RuntimeError)
    assert generate_together(engine, []) == []


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "eight", None])
def test_bad_batch_sizes_are_refused_naming_the_argument(value):
    with pytest.raises(TGLlavaConfigError, match=r"--batch-size: batch_size must be a positive integer"):
        check_batch_size(value, where="--batch-size")
    assert check_batch_size(8) == check_batch_size("8") == 8


def test_run_batch_sizes_follow_the_keyword_rules(tmp_path):
    """A ``--config`` entry's own batch_size wins; presets take ``--batch-size``; class entries the default."""
    import json

    from tg_llava_eval.model_wrappers.vlmevalkit import run_batch_sizes
    from tg_llava_eval.model_wrappers.vlmevalkit_batching import DEFAULT_BATCH_SIZE

    config = tmp_path / "eval.json"
    config.write_text(json.dumps({"model": {"tg_llava": {}, "TG-LLaVA-Qwen2-7B": {"batch_size": 2},
                                            "mine": {"class": "TGLLaVA", "model_path": "x"}}}))
    names = ["tg_llava", "TG-LLaVA-Qwen2-7B", "mine"]
    assert run_batch_sizes(names, config, 4) == {"tg_llava": 4, "TG-LLaVA-Qwen2-7B": 2, "mine": DEFAULT_BATCH_SIZE}
    assert run_batch_sizes(["tg_llava"], None, None) == {"tg_llava": DEFAULT_BATCH_SIZE}
    with pytest.raises(TGLlavaConfigError, match="--batch-size: batch_size must be a positive integer, got 0"):
        run_batch_sizes(["tg_llava"], None, 0)
    config.write_text(json.dumps({"model": {"tg_llava": {"batch_size": 2.5}}}))
    with pytest.raises(TGLlavaConfigError, match="--config entry 'tg_llava': batch_size must be a positive integer"):
        run_batch_sizes(["tg_llava"], config, None)
