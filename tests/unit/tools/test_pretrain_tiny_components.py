"""tools/pretrain_tiny_components.py end to end at a few steps: both parts are written, load into
the demo's presets through ``assemble_checkpoint``, and the record says how they were made."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import torch

from tg_llava_eval.checkpoints.assembling import assemble_checkpoint
from tg_llava_eval.demo.synthetic.questions import MCQ_SUFFIX
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration

#: A few training steps of both parts: run by make test, not by make test-quick.
pytestmark = pytest.mark.slow

TOOL = Path(__file__).resolve().parents[3] / "tools" / "pretrain_tiny_components.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("pretrain_tiny_components", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_a_short_run_writes_parts_the_demo_presets_assemble_from(tool, tmp_path: Path, one_torch_thread):
    out = tmp_path / "parts"
    small = ["--out", str(out), "--workers", "1", "--eval-every", "2", "--llm-steps", "2", "--llm-batch", "4",
             "--llm-pool", "10", "--clip-steps", "2", "--clip-batch", "8", "--clip-pool", "10"]
    assert tool.main(small + ["--parts", "clip"]) == 0
    assert tool.main(small + ["--parts", "llm", "--lookup-share", "0.5"]) == 0
    record = json.loads((out / "pretraining.json").read_text())
    # Separate runs keep one entry per part, each with its command and curve.
    assert set(record) == {"clip", "llm"}
    assert record["llm"]["command"].endswith("--parts llm --lookup-share 0.5") and record["clip"]["command"].endswith("--parts clip")
    assert [p["step"] for p in record["clip"]["curve"]] == [2]
    # The LLM's curve has each question kind, each kind's categories and the option-lookup drills.
    accuracy = record["llm"]["curve"][0]["accuracy"]
    assert {"mcq", "vqa", "yorn", "lookup", "mcq/colour_single", "yorn/exists_in_region", "lookup/colour",
            "lookup/count"} <= set(accuracy)
    assert record["llm"]["held_out_layouts_excluded"] > 0

    # A continued run records the run it continued (the chain of a pretraining in several runs).
    more = tmp_path / "more"
    assert tool.main(small[2:] + ["--out", str(more), "--parts", "llm", "--llm-init", str(out / "llm"), "--seed", "1"]) == 0
    continued = json.loads((more / "pretraining.json").read_text())["llm"]
    assert continued["init"] == {"llm": str(out / "llm"), "record": record["llm"]}
    assert "init" not in record["llm"]

    checkpoint = assemble_checkpoint("tiny", tmp_path / "tiny", vision=out / "clip", llm=out / "llm")
    model = TGLlavaForConditionalGeneration.from_pretrained(checkpoint)
    trained = tool.Qwen2ForCausalLM.from_pretrained(out / "llm")
    assert torch.equal(model.language_model.get_input_embeddings().weight, trained.get_input_embeddings().weight)


def test_the_pixels_it_trains_on_are_the_processors(tool):
    parts = tool.build_parts(None)
    tool._WORKER.update(seed=0, image_size=parts.clip_config.vision_config.image_size, held_out=set())
    data = tool.ClipData([tool._clip_chunk(0)], parts, torch.device("cpu"))
    tool.check_pixels(parts, data)  # raises when the on-device normalisation drifts from the processor's
    # Cell labels follow the patches: the patch grid is 4x4 over a 2x2 grid of cells.
    assert tool._patch_cells(56, 14).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]


def test_option_lookup_drills_name_the_answer_among_four_options(tool):
    conversation = tool.lookup_conversation(random.Random(0), "colour")
    question, answer = conversation[0]["value"], conversation[1]["value"]
    lines = question.split("\n")
    options = dict(line.split(". ", 1) for line in lines[1:5])
    assert list(options) == ["A", "B", "C", "D"] and lines[-1] == MCQ_SUFFIX
    named = options[answer]
    assert named in tool.LOOKUP_VOCABULARIES["colour"] and set(options.values()) <= set(tool.LOOKUP_VOCABULARIES["colour"])
    assert lines[0] in {template.format(named) for template in tool.LOOKUP_QUESTIONS}
    # Without a vocabulary one is drawn; every vocabulary occurs.
    rng = random.Random(1)
    drawn = {tool.lookup_conversation(rng)[0]["value"].split("\n")[1].split(". ", 1)[1] for _ in range(60)}
    assert drawn & set(tool.LOOKUP_VOCABULARIES["shape"]) and drawn & set(tool.LOOKUP_VOCABULARIES["count"])
