"""Golden tests: prompts and guide texts byte-identical to the official strings (prompts_golden.json).

Every case goes through the processor's real paths: ``apply_template`` (generation, as the official
runner builds it), ``training_segments`` (the string the official training code tokenizes) and
the guide rules (``training_guide_text`` / ``inference_guide_text``). The training strings are also
tokenised with labels, on the built tokenizers and on the real Llama-3/Qwen2 vocabularies.
"""

from __future__ import annotations

import pytest

from tg_llava_eval.errors import TGLlavaConfigError, TGLlavaInputError
from tg_llava_eval.processing import get_template, move_image_marker_to_front, training_guide_text

from .helpers import TEMPLATE_NAMES, with_vocabularies

Q1, A1 = "What is in this image?", "A red ball on a wooden table."
Q2, A2 = "What colour is the table?", "It is brown."

#: The raw training samples of prompts_golden.json's ``_about.cases``.
RAW_SAMPLES = {
    "train_single_turn": [{"from": "human", "value": "<image>\n" + Q1}, {"from": "gpt", "value": A1}],
    "train_two_turn": [
        {"from": "human", "value": "<image>\n" + Q1},
        {"from": "gpt", "value": A1},
        {"from": "human", "value": Q2},
        {"from": "gpt", "value": A2},
    ],
    "train_image_token_at_end": [{"from": "human", "value": Q1 + "\n<image>"}, {"from": "gpt", "value": A1}],
    "train_image_token_in_middle": [
        {"from": "human", "value": "  Look at this: <image> what is it?  "},
        {"from": "gpt", "value": A1},
    ],
}


def test_golden_file_has_the_expected_questions(golden_prompts):
    # The raw samples above must be the ones the golden strings were made from.
    assert golden_prompts["_about"]["questions"] == {"Q1": Q1, "A1": A1, "Q2": Q2, "A2": A2}
    assert set(golden_prompts) - {"_about"} == set(TEMPLATE_NAMES)


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_generation_prompt_matches_official_runner(template, golden_prompts, make_processor):
    processor = make_processor(template)
    golden = golden_prompts[template]["gen_single_turn"]
    # The runner prepends "<image>\n" to the query; the engine passes the bare question.
    assert processor.apply_template(Q1, has_image=True) == golden
    assert processor.apply_template("<image>\n" + Q1, has_image=True) == golden
    assert processor.inference_guide_text("<image>\n" + Q1) == golden_prompts[template]["gen_single_turn_text_guide(runner)"]


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(TEMPLATE_NAMES))
@pytest.mark.parametrize("case", sorted(RAW_SAMPLES))
def test_training_string_and_guide_match_official(template, vocabulary, case, golden_prompts, make_processor):
    processor = make_processor(template, vocabulary=vocabulary)
    golden = golden_prompts[template][case]
    raw = RAW_SAMPLES[case]
    if golden is None:
        # plain handles exactly one exchange (the official preprocess asserts it).
        assert case == "train_two_turn" and template == "plain"
        with pytest.raises(TGLlavaInputError, match="exactly one human turn"):
            processor.training_segments(raw, has_image=True)
    else:
        segments = processor.training_segments(raw, has_image=True)
        assert "".join(segment.text for segment in segments) == golden
    assert training_guide_text(raw, "<image>") == golden_prompts[template][case + "_text_guide"]
    if golden is not None:
        assert processor.tokenize_training_sample(raw, has_image=True).guide_text == golden_prompts[template][case + "_text_guide"]


def test_guide_keeps_inner_whitespace_and_uses_last_human_turn():
    raw = RAW_SAMPLES["train_image_token_in_middle"]
    assert training_guide_text(raw, "<image>") == "Look at this:  what is it?"
    assert training_guide_text(RAW_SAMPLES["train_two_turn"], "<image>") == Q2


def test_move_image_marker_rules():
    assert move_image_marker_to_front("Q1\n<image>", "<image>") == "<image>\nQ1"
    assert move_image_marker_to_front("  a <image> b  ", "<image>") == "<image>\na  b"
    # A turn that is only the marker stays the marker (the official final strip).
    assert move_image_marker_to_front("<image>", "<image>") == "<image>"


def test_vicuna_alias_and_unknown_template():
    assert get_template("v1") is get_template("vicuna_v1")
    with pytest.raises(TGLlavaConfigError, match="unknown conversation template 'chatml'"):
        get_template("chatml")


@pytest.mark.parametrize("template", ["vicuna_v1", "llama_3", "qwen_2"])
def test_multi_turn_generation_prompt_is_training_string_prefix(template, golden_prompts, make_processor):
    # A generation prompt with history must be the training string up to the last answer.
    processor = make_processor(template)
    prompt = processor.apply_template(Q2, has_image=True, history=[(Q1, A1)])
    golden_two_turn = golden_prompts[template]["train_two_turn"]
    assert golden_two_turn.startswith(prompt)
    assert golden_two_turn[len(prompt) :].lstrip(" ").startswith(A2)


def test_plain_generation_refuses_history(make_processor):
    with pytest.raises(TGLlavaInputError, match="exactly one human turn"):
        make_processor("plain").apply_template(Q2, has_image=True, history=[(Q1, A1)])


def test_templates_are_not_hf_chat_templates(llm_tokenizers):
    # Our tiny tokenizers carry no chat template: the project templates are the only source.
    for name in ("qwen_2", "llama_3", "vicuna_v1"):
        assert not getattr(llm_tokenizers[name], "chat_template", None)


@pytest.mark.parametrize("case", ["train_single_turn", "train_two_turn"])
def test_qwen_2_bare_is_official_qwen_2_without_the_system_turn(case, golden_prompts, make_processor):
    # The tiny presets' template: the official qwen_2 strings minus "{system}<|im_end|>", the same
    # supervised answers, and the same generation prompt minus the system turn.
    system_turn = get_template("qwen_2").system_text + "<|im_end|>"
    official = golden_prompts["qwen_2"][case]
    assert official.startswith(system_turn)
    processor = make_processor("qwen_2_bare", tokenizer_of="qwen_2")
    segments = processor.training_segments(RAW_SAMPLES[case], has_image=True)
    assert "".join(segment.text for segment in segments) == official[len(system_turn):]
    official_segments = make_processor("qwen_2").training_segments(RAW_SAMPLES[case], has_image=True)
    assert [s.text for s in segments if s.supervised] == [s.text for s in official_segments if s.supervised]
    generation = golden_prompts["qwen_2"]["gen_single_turn"]
    assert processor.apply_template(Q1, has_image=True) == generation[len(system_turn):]
    assert processor.stop_token_ids == make_processor("qwen_2").stop_token_ids
