"""``lmms-eval --model tg_llava --model_args pretrained=DIR --tasks ... --include_path DIR`` end to
end: the real console script, offline, on the tiny checkpoint and the local tasks (generation on
jsonl + PNG files, multiple choice on parquet + PNG files, bad documents, two rounds).

The run itself is the session fixture ``cli_single_run`` (conftest.py); these tests read its
results JSON, samples JSONL files, log and run manifest.
"""

from __future__ import annotations

import datetime
import importlib.metadata
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from tg_lmms_helpers import ALL_TASKS, BAD_TASK, GEN_TASK, MC_TASK, MULTIROUND_TASK, TASK_UTILS

import tg_llava_eval

pytestmark = pytest.mark.e2e

ERROR = "[tg_llava error] "
DOC_COUNTS = {GEN_TASK: 8, MC_TASK: 4, BAD_TASK: 6, MULTIROUND_TASK: 3}


def test_cli_writes_results_and_samples(cli_single_run):
    results = cli_single_run.results
    assert set(ALL_TASKS) <= set(results["results"])
    assert {task: results["n-samples"][task]["effective"] for task in ALL_TASKS} == DOC_COUNTS
    assert results["config"]["model"] == "tg_llava"
    assert results["config"]["model_backend"] == "tg_llava_eval.model_wrappers.lmms_eval.TGLlava (simple)"
    assert results["config"]["batch_size"] == "2"
    for task, metric in ((GEN_TASK, "exact_match"), (MC_TASK, "acc"), (BAD_TASK, "failed"), (MULTIROUND_TASK, "rounds")):
        assert isinstance(results["results"][task][f"{metric},none"], float), (task, results["results"][task])
        assert len(cli_single_run.samples[task]) == DOC_COUNTS[task]

    for sample in cli_single_run.samples[GEN_TASK]:
        answer = sample["filtered_resps"]
        assert isinstance(answer, str) and answer and not answer.startswith(ERROR), sample
        assert sample["input"].endswith("\nAnswer the question using a single word or phrase.")
        assert sample["token_counts"][0]["input_tokens"] > 0 < sample["token_counts"][0]["output_tokens"] <= 6

    assert results["results"][MULTIROUND_TASK]["rounds,none"] == 2.0
    for sample in cli_single_run.samples[MULTIROUND_TASK]:
        rounds = sample["filtered_resps"]
        assert len(rounds) == 2 and all(isinstance(r, str) and not r.startswith(ERROR) for r in rounds), sample


def test_cli_multiple_choice_scores_are_the_engines_losses(cli_single_run, tiny_checkpoint):
    """Each option's first element is -log p(option | question, image) from the engine, and
    lmms-eval's accuracy is the argmin of those losses (the most likely option)."""
    from tg_llava_eval.inference import TGLlavaEngine
    from tg_llava_eval.inference.requests import LoglikelihoodRequest

    rows = pd.read_parquet(TASK_UTILS.parent / "data" / "mc.parquet").set_index("id")
    engine = TGLlavaEngine.from_pretrained(tiny_checkpoint, device="cpu")
    accuracies = []
    for sample in cli_single_run.samples[MC_TASK]:
        pairs = sample["filtered_resps"]  # lmms-eval stringifies the pairs in the samples file
        losses = [float(loss) for loss, _ in pairs]
        assert len(pairs) == 4 and all(greedy in ("True", "False") for _, greedy in pairs)
        image = Image.open(TASK_UTILS.parent / rows.loc[sample["doc_id"], "image"]).convert("RGB")
        scored = engine.loglikelihood(
            [LoglikelihoodRequest(prompt=sample["input"], continuation=letter, images=[image]) for letter in "ABCD"]
        )
        assert losses == pytest.approx([-r.logprob for r in scored], abs=1e-4)
        predicted = min(range(4), key=losses.__getitem__)
        assert sample["acc"] == float(predicted == "ABCD".index(sample["target"]))
        accuracies.append(sample["acc"])
    assert cli_single_run.results["results"][MC_TASK]["acc,none"] == pytest.approx(sum(accuracies) / len(accuracies))


def test_cli_bad_documents_are_recorded_and_counted(cli_single_run):
    samples = {sample["doc_id"]: sample for sample in cli_single_run.samples[BAD_TASK]}
    assert not samples[0]["filtered_resps"].startswith(ERROR), samples[0]
    # The ~600-word question is answered: its text guide is cut to the CLIP tower's 77 tokens
    # (the official code would crash there) and the LLM has room for it.
    assert len(samples[4]["input"].split()) > 500
    assert samples[4]["filtered_resps"] and not samples[4]["filtered_resps"].startswith(ERROR), samples[4]
    expected = {
        1: ("missing.png", "not found"),
        2: ("corrupt.png", "corrupt"),
        3: ("empty question",),
        5: ("doc_to_visual raised FileNotFoundError",),
    }
    for doc_id, needles in expected.items():
        response = samples[doc_id]["filtered_resps"]
        assert response.startswith(f"{ERROR}request {BAD_TASK}/test doc {doc_id}: "), response
        for needle in needles:
            assert needle in response, (doc_id, response)
    assert cli_single_run.results["results"][BAD_TASK]["failed,none"] == pytest.approx(4 / 6)
    # The count of failures of the generate_until call (8 generation + 6 bad documents).
    assert "tg_llava: 4 of 14 generate_until requests failed on rank 0" in cli_single_run.log


def test_cli_writes_the_run_manifest(cli_single_run, tiny_checkpoint):
    import json

    from tg_llava_eval.variants import get_variant

    manifest = json.loads((cli_single_run.results_dir / "tg_llava_run.json").read_text(encoding="utf-8"))
    created = manifest.pop("created")
    assert manifest == {
        "schema": "tg_llava_run/1",
        "toolkit": "lmms-eval",
        "toolkit_version": importlib.metadata.version("lmms_eval"),
        "model_name": "tg_llava",
        "variant": "tiny",
        "llm": get_variant("tiny").llm,
        "checkpoint": str(Path(tiny_checkpoint).resolve()),
        "tg_llava_eval_version": tg_llava_eval.__version__,
        "switches": {"text_guided_mask": True, "detail_perceiver": True},
    }
    assert datetime.datetime.fromisoformat(created).tzinfo is not None
