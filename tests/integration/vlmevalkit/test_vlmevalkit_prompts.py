"""Prompt parity with VLMEvalKit's LLaVA-1.5 wrapper, request building, bad-row handling, registration.

No weights: VLMEvalKit's ``vlmeval.vlm.LLaVA`` is instantiated without running its loader (its
``__init__`` needs the haotian-liu ``llava`` package and a GPU), and ours via
``TGLLaVA.without_engine()``. Both get the same image-dump function, as VLMEvalKit's inference loop
would give them (``model.set_dump_image(dataset.dump_image)``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("vlmeval")

import vlmeval.config  # noqa: E402
import vlmeval.inference  # noqa: E402
import vlmeval.vlm  # noqa: E402
from vlmeval.dataset.utils.yorn import YOrN_Extraction  # noqa: E402
from vlmeval.smp import decode_base64_to_image_file  # noqa: E402
from vlmeval.utils.matching_util import can_infer_option  # noqa: E402
from vlmeval.vlm.base import BaseModel  # noqa: E402
from vlmeval.vlm.llava.llava import LLaVA  # noqa: E402

from tg_llava_eval.errors import TGLlavaConfigError, TGLlavaInputError  # noqa: E402
from tg_llava_eval.model_wrappers import vlmevalkit as wrapper  # noqa: E402

_DATA = Path(__file__).resolve().parents[2] / "data" / "vlmeval" / "tiny_datasets.py"
_spec = importlib.util.spec_from_file_location("tiny_datasets", _DATA)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

#: The LLaVA-1.5 MCQ suffix, written out so the tests pin the text itself, not only the equality.
MCQ_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
OPEN_SUFFIX = "\nAnswer the question directly."


def _dump_into(root: Path):
    """A stand-in for ``dataset.dump_image``: decode the row's base64 image to ``root/<index>.png``."""
    def dump(line):
        path = root / f"{line['index']}.png"
        decode_base64_to_image_file(line["image"], str(path))
        return [str(path)]
    return dump


@pytest.fixture
def llava(tmp_path):
    """VLMEvalKit's installed LLaVA-1.5 wrapper class, without its weights loader."""
    model = LLaVA.__new__(LLaVA)
    BaseModel.__init__(model)
    model.set_dump_image(_dump_into(tmp_path / "llava"))
    return model


@pytest.fixture
def ours(tmp_path):
    model = wrapper.TGLLaVA.without_engine()
    model.set_dump_image(_dump_into(tmp_path / "ours"))
    return model


def _row(**fields) -> pd.Series:
    base = {"index": 7, "image": tiny.image_b64(0), "question": "What colour is the background?"}
    base.update(fields)
    return pd.Series(base)


def _texts(message):
    return [item["value"] for item in message if item["type"] == "text"]


MCQ_ROWS = {
    "mcq_hint": (_row(hint="The shape in the middle is white.", A="red", B="green", C="blue", D=float("nan")),
                 "The shape in the middle is white.\nWhat colour is the background?\nA. red\nB. green\nC. blue" + MCQ_SUFFIX),
    "mcq_no_hint": (_row(hint=float("nan"), A="red", B="green"),
                    "What colour is the background?\nA. red\nB. green" + MCQ_SUFFIX),
    "mcq_no_hint_column": (_row(A="yes", B="no", C="maybe", D="never"),
                           "What colour is the background?\nA. yes\nB. no\nC. maybe\nD. never" + MCQ_SUFFIX),
    "mcq_chinese": (_row(question="背景是什么颜色？", A="红", B="绿"), "背景是什么颜色？\nA. 红\nB. 绿\n请直接回答选项字母。"),
    "yorn": (_row(question="Is the background red? Please answer yes or no."),
             "Is the background red? Please answer yes or no." + OPEN_SUFFIX),
    "vqa": (_row(question="What colour is the shape?"), "What colour is the shape?" + OPEN_SUFFIX),
}


@pytest.mark.parametrize("case", sorted(MCQ_ROWS))
def test_prompt_equals_llava_build_prompt(case, llava, ours, tmp_path):
    """MCQ (hint / no hint / CN), Y/N and VQA rows of a custom dataset (VLMEvalKit types it MCQ)."""
    row, golden = MCQ_ROWS[case]
    dataset = "tg_custom_set"
    assert ours.use_custom_prompt(dataset) is llava.use_custom_prompt(dataset) is True
    theirs = LLaVA.build_prompt(llava, row, dataset)
    mine = ours.build_prompt(row, dataset)
    assert _texts(mine) == _texts(theirs) == [golden]
    assert [item["type"] for item in mine] == [item["type"] for item in theirs] == ["image", "text"]
    assert Path(mine[0]["value"]).name == Path(theirs[0]["value"]).name == "7.png"
    # what the engine receives: the same user text, the image as a separate input; the template and
    # the text guide (this text without image markers, cut to 77 CLIP tokens) are the engine's job
    request = ours.build_request(mine)
    assert request.prompt == golden
    assert request.images == (mine[0]["value"],)
    assert request.guide_text is None


@pytest.mark.parametrize("dataset", [
    "MMBench_DEV_EN", "MMBench_DEV_EN_V11", "SEEDBench_IMG", "MMStar", "ScienceQA_TEST", "MMMU_DEV_VAL", "AI2D_TEST",
    "MME", "POPE", "HallusionBench", "TextVQA_VAL", "GQA_TestDev_Balanced", "OCRBench", "COCO_VAL",
    "tg_tiny_mcq", "my_openended_set",
])
def test_custom_prompt_choice_equals_llava(dataset, llava, ours):
    """Where LLaVA-1.5 defers to the dataset's own prompt (Y/N, VQA, captioning), so do we."""
    assert ours.use_custom_prompt(dataset) == llava.use_custom_prompt(dataset)


def test_official_yorn_and_vqa_use_dataset_prompt(ours):
    assert ours.use_custom_prompt("MME") is False
    assert ours.use_custom_prompt("TextVQA_VAL") is False
    assert ours.use_custom_prompt("MMBench_DEV_EN") is True


def test_generation_defaults_are_llava15s():
    request = wrapper.TGLLaVA.without_engine().build_request([{"type": "text", "value": "hi"}])
    assert (request.max_new_tokens, request.temperature, request.top_p, request.num_beams) == (2048, 0.0, None, 1)
    assert request.images == ()
    custom = wrapper.TGLLaVA.without_engine(max_new_tokens=8, temperature=0.7, do_sample=True, top_p=0.9)
    assert custom.generation == wrapper.GenerationSettings(max_new_tokens=8, temperature=0.7, top_p=0.9, num_beams=1)
    # LLaVA-1.5 semantics: without do_sample the temperature is ignored (greedy)
    assert wrapper.TGLLaVA.without_engine(temperature=0.7, top_p=0.9).generation == wrapper.LLAVA15_GENERATION
    # the project's one rule (also lmms-eval's): do_sample alone samples at temperature 1
    assert wrapper.TGLLaVA.without_engine(do_sample=True).generation.temperature == 1.0
    with pytest.raises(TGLlavaConfigError, match="max_new_tokens must be a positive integer"):
        wrapper.TGLLaVA.without_engine(max_new_tokens=0)
    with pytest.raises(TGLlavaConfigError, match=r"unknown decoding keyword\(s\) \['max_tokens'\]"):
        wrapper.TGLLaVA.without_engine(max_tokens=8)


def test_image_position_and_single_image_rule(ours):
    leading = ours.build_request([{"type": "image", "value": "/x/a.png"}, {"type": "text", "value": "Q?"}])
    assert (leading.prompt, leading.images) == ("Q?", ("/x/a.png",))
    inline = ours.build_request([{"type": "text", "value": "Look: "}, {"type": "image", "value": "/x/a.png"},
                                 {"type": "text", "value": " What is it?"}])
    assert inline.prompt == "Look: <image> What is it?"
    with pytest.raises(TGLlavaInputError, match="single-image model; this row has 2 images"):
        ours.build_request([{"type": "image", "value": "/x/a.png"}, {"type": "image", "value": "/x/b.png"},
                            {"type": "text", "value": "Compare."}])
    with pytest.raises(TGLlavaInputError, match="not 'video'"):
        ours.build_request([{"type": "video", "value": "/x/a.mp4"}, {"type": "text", "value": "?"}])


def test_chat_request_history(ours):
    turns = [
        {"role": "user", "content": [{"type": "image", "value": "/x/a.png"}, {"type": "text", "value": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "value": "A cat."}]},
        {"role": "user", "content": [{"type": "text", "value": "What colour?"}]},
    ]
    request = ours.build_chat_request(turns)
    assert request.prompt == "What colour?"
    assert request.history == (("What is it?", "A cat."),)
    assert request.images == ("/x/a.png",)
    with pytest.raises(TGLlavaInputError, match="end with a user turn"):
        ours.build_chat_request(turns[:2])


def _assert_unscorable(prediction: str):
    """A failure text must not be read as an answer by VLMEvalKit's exact matching."""
    assert prediction.startswith("Failed to obtain answer: [TG-LLaVA] ")
    assert YOrN_Extraction(prediction) == "Unknown"
    assert can_infer_option(prediction, {"A": "red", "B": "green", "C": "blue", "D": "grey"}) is False


def test_bad_rows_become_failure_predictions(ours, tmp_path):
    """Without an engine: failures found while building the prompt or checking the files never raise."""
    dataset = "tg_tiny_bad_rows"
    empty = ours.generate(ours.build_prompt(_row(index=3, question="  ", A="red", B="green"), dataset), dataset)
    assert empty == "Failed to obtain answer: [TG-LLaVA] row 3 of tg_tiny_bad_rows: the question is empty"
    nan_question = ours.generate(ours.build_prompt(_row(index=5, question=float("nan"), A="x", B="y"), dataset), dataset)
    assert "row 5 of tg_tiny_bad_rows: the question is empty" in nan_question
    not_png = _row(index=2, image="bm90IGFuIGltYWdl" * 8, A="red", B="green")
    undecodable = ours.generate(ours.build_prompt(not_png, dataset), dataset)
    assert undecodable.endswith("row 2 of tg_tiny_bad_rows: its image cannot be decoded "
                                "(the data is not an image file PIL can read)")
    missing = str(tmp_path / "nowhere.png")
    gone = ours.generate([{"type": "image", "value": missing}, {"type": "text", "value": "Q?"}], dataset)
    assert gone == f"Failed to obtain answer: [TG-LLaVA] image file {missing} does not exist"
    pictures = [tmp_path / "a.png", tmp_path / "b.png"]
    for index, picture in enumerate(pictures):
        picture.write_bytes(tiny.image_png(index))
    two = ours.generate([{"type": "image", "value": str(pictures[0])}, {"type": "image", "value": str(pictures[1])},
                         {"type": "text", "value": "Q?"}], dataset)
    assert "single-image model" in two
    for prediction in (empty, nan_question, undecodable, gone, two):
        _assert_unscorable(prediction)
    assert ours.row_counts(dataset) == (5, 5)
    assert not ours._pending_failures


def test_register_in_place_and_class_for_config():
    supported = vlmeval.config.supported_VLM
    before = id(supported)
    names = wrapper.register()
    assert wrapper.register() == names  # idempotent
    assert id(vlmeval.config.supported_VLM) == before
    assert vlmeval.inference.supported_VLM is supported  # the dict VLMEvalKit's inference loop reads
    for name in ("tg_llava", "TG-LLaVA-Vicuna-13B", "TG-LLaVA-Llama3-8B", "TG-LLaVA-Qwen2-7B",
                 "LLaVA-1.5-Qwen2-7B-TG-Baseline", "TG-LLaVA-Qwen2-7B-no-FOM", "TG-LLaVA-Qwen2-7B-no-DP"):
        assert name in names and supported[name].func is wrapper.TGLLaVA
    assert supported["TG-LLaVA-Qwen2-7B"].keywords == {"variant": "tg-llava-qwen2-7b"}
    assert supported["llava_v1.5_7b"].func is vlmeval.vlm.LLaVA  # VLMEvalKit's own models untouched
    assert vlmeval.vlm.TGLLaVA is wrapper.TGLLaVA
    # presets carry no weights: a clear error, not a download attempt
    with pytest.raises(TGLlavaConfigError, match="--model-path"):
        supported["TG-LLaVA-Qwen2-7B"]()


def test_register_refuses_to_replace_a_toolkit_model(monkeypatch):
    monkeypatch.setitem(vlmeval.config.supported_VLM, "tg_llava", functools.partial(vlmeval.vlm.LLaVA))
    with pytest.raises(TGLlavaConfigError, match="already has a model named 'tg_llava'"):
        wrapper.register()


def test_bind_presets_and_variant_conflicts(monkeypatch, tmp_path):
    wrapper.register()
    for preset in wrapper.PRESETS:
        monkeypatch.setitem(vlmeval.config.supported_VLM, preset.name, vlmeval.config.supported_VLM[preset.name])
    wrapper.bind_presets(model_path=tmp_path, variant="tiny", generation={"max_new_tokens": 4})
    supported = vlmeval.config.supported_VLM
    assert supported["tg_llava"].keywords == {"model_path": str(tmp_path), "variant": "tiny", "max_new_tokens": 4}
    assert supported["TG-LLaVA-Qwen2-7B"].keywords["variant"] == "tg-llava-qwen2-7b"
    wrapper.check_variant_request(["tg_llava", "TG-LLaVA-Qwen2-7B"], None)
    wrapper.check_variant_request(["TG-LLaVA-Qwen2-7B"], "tg-llava-qwen2-7b")
    with pytest.raises(TGLlavaConfigError, match="contradicts --model TG-LLaVA-Qwen2-7B"):
        wrapper.check_variant_request(["TG-LLaVA-Qwen2-7B"], "tg-llava-llama3-8b")


def test_config_class_resolution_through_vlmevalkit():
    """VLMEvalKit's own ``--config`` model builder finds ``"class": "TGLLaVA"`` once registered."""
    wrapper.register()
    import vlmeval.run

    with pytest.raises(TGLlavaConfigError, match="no weights"):
        vlmeval.run.build_model_from_config({"mine": {"class": "TGLLaVA", "max_new_tokens": 4}}, "mine")


def test_presets_name_known_variants():
    variants = pytest.importorskip("tg_llava_eval.variants")
    known = set(variants.list_variants())
    for preset in wrapper.PRESETS:
        assert preset.variant is None or preset.variant in known, preset


def test_manifest_schema(tmp_path):
    manifest = wrapper.run_manifest("tg_llava", checkpoint=tmp_path, variant="tiny", llm="tiny-Qwen2").to_dict()
    assert manifest["schema"] == "tg_llava_run/1" and manifest["toolkit"] == "vlmevalkit"
    assert (manifest["toolkit_distribution"], manifest["toolkit_version"]) == ("ms-vlmeval", "0.0.20")
    assert set(manifest) == {"schema", "toolkit", "toolkit_version", "toolkit_distribution", "model_name", "variant",
                             "llm", "checkpoint", "tg_llava_eval_version", "created"}
    assert manifest["checkpoint"] == str(tmp_path.resolve())


def test_variant_recognised_or_refused(tmp_path):
    """Variants are recognised from config fields (never from names/paths) and mismatches are named."""
    from tg_llava_eval.variants import get_variant, recognise_variant

    tiny = get_variant("tiny").config()
    assert recognise_variant(tiny) == "tiny"
    anonymous = get_variant("tiny-baseline").config(variant=None)
    assert recognise_variant(anonymous) == "tiny-baseline"
    assert wrapper.resolve_variant(tiny, "tiny", source="x") == "tiny"
    with pytest.raises(TGLlavaConfigError, match=r"not a tiny-baseline checkpoint \(use_text_guided_mask: checkpoint True"):
        wrapper.resolve_variant(tiny, "tiny-baseline", source="x")
    with pytest.raises(TGLlavaConfigError, match="not a tg-llava-qwen2-7b checkpoint"):
        wrapper.resolve_variant(tiny, "tg-llava-qwen2-7b", source="x")
    with pytest.raises(TGLlavaConfigError, match="unknown variant"):
        wrapper.resolve_variant(tiny, "tg-llava-qwen3", source="x")
    tiny.save_pretrained(tmp_path)
    manifest = wrapper.checkpoint_manifest("tg_llava", tmp_path, None)
    assert (manifest.variant, manifest.llm) == ("tiny", "tiny-Qwen2")
    with pytest.raises(TGLlavaConfigError, match="no config.json"):
        wrapper.checkpoint_manifest("tg_llava", tmp_path / "empty", None)


def test_a_local_yorn_set_gets_the_dataset_prompt_not_the_mcq_path(ours, llava, tmp_path, monkeypatch):
    """``DATASET_TYPE`` cannot place a local set's name (it defaults to MCQ), so LLaVA-1.5's name rule
    would send a ``--config`` Y/N set (``ImageYORNDataset``) down the MCQ prompt path and append
    "Answer the question directly." to every yes/no question. The dataset object VLMEvalKit hands
    over (``set_dump_image``) knows its type; we follow it."""
    from vlmeval.dataset import ImageMCQDataset, ImageYORNDataset

    from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset

    data = generate_synthetic_dataset(tmp_path / "synth", seed=2, n_train_stage1=1, n_train_stage2=1, n_test=2,
                                      image_size=56)
    monkeypatch.setenv("LMUData", str(data.lmudata_dir))
    yorn, mcq = ImageYORNDataset(data.vlmeval_datasets["yorn"]), ImageMCQDataset(data.vlmeval_datasets["mcq"])
    assert llava.use_custom_prompt(yorn.dataset_name) is True  # the name rule's default
    for dataset, custom in ((yorn, False), (mcq, True)):
        ours.set_dump_image(dataset.dump_image)
        assert ours.use_custom_prompt(dataset.dataset_name) is custom
