"""Local tokenizer builders: special tokens per family, offline round trip, determinism, corpus.

The special-token, role and round-trip checks also run on the real Llama-3/Qwen2 vocabularies of
``tests/real_vocabularies.py``, which must behave like the built tokenizers of their family."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.processing import build_guide_tokenizer, build_llm_tokenizer, default_corpus

from .helpers import with_vocabularies

SPECIALS = {
    "qwen_2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"],
    "llama_3": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>"],
    "vicuna_v1": ["<s>", "</s>", "<unk>", "<image>"],
}
#: (bos, eos, pad) per family.
ROLES = {
    "qwen_2": (None, "<|im_end|>", "<|endoftext|>"),
    "llama_3": ("<|begin_of_text|>", "<|eot_id|>", "<|reserved_special_token_0|>"),
    "vicuna_v1": ("<s>", "</s>", "<unk>"),
}
SAMPLES = ["A red circle in the top left corner.", "Zählen Sie die Würfel: 3 × 🟥!", "two  spaces\nand a newline\n"]


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(sorted(SPECIALS)))
def test_special_tokens_are_single_tokens(template, vocabulary, tokenizer_for):
    tokenizer = tokenizer_for(template, vocabulary)
    for token in SPECIALS[template]:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids) == [token], token
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ROLES[template]


def test_bos_behaviour_per_family(llm_tokenizers):
    assert llm_tokenizers["vicuna_v1"]("red")["input_ids"][0] == llm_tokenizers["vicuna_v1"].bos_token_id
    assert llm_tokenizers["llama_3"]("red")["input_ids"][0] == llm_tokenizers["llama_3"].bos_token_id
    assert llm_tokenizers["qwen_2"]("red")["input_ids"] == llm_tokenizers["qwen_2"]("red", add_special_tokens=False)["input_ids"]
    assert llm_tokenizers["plain"].bos_token == "<s>"


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(sorted(SPECIALS)))
def test_offline_round_trip_and_lossless_text(template, vocabulary, tokenizer_for, tmp_path):
    tokenizer = tokenizer_for(template, vocabulary)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert len(reloaded) == len(tokenizer)
    for text in SAMPLES:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert reloaded(text, add_special_tokens=False)["input_ids"] == ids
        # The BOS rule survives the round trip (the checkpoint's tokenizer is a reloaded one).
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("template", ["qwen_2", "llama_3", "vicuna_v1"])
def test_same_inputs_give_identical_files(template, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    build_llm_tokenizer(template).save_pretrained(first)
    build_llm_tokenizer(template).save_pretrained(second)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and "tokenizer.json" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_guide_tokenizer_files_are_deterministic(tmp_path):
    build_guide_tokenizer(300).save_pretrained(tmp_path / "a")
    build_guide_tokenizer(300).save_pretrained(tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_corpus_covers_the_demo_vocabulary(llm_tokenizers):
    words = set(" ".join(default_corpus()).replace(".", " ").replace("?", " ").split())
    required = {
        "red", "green", "blue", "yellow", "circle", "square", "triangle", "left", "right", "top",
        "bottom", "centre", "corner", "one", "two", "three", "Yes", "No", "yes", "no",
        *"ABCDEFGH", *"0123456789",
    }
    assert required <= words, required - words
    # Frequent demo words are single tokens of the tiny vocabularies.
    qwen = llm_tokenizers["qwen_2"]
    for word in (" red", " circle", " left", " corner", " two"):
        assert len(qwen(word, add_special_tokens=False)["input_ids"]) == 1, word
    assert default_corpus() == default_corpus()


def test_custom_corpus_and_errors():
    tokenizer = build_llm_tokenizer("qwen_2", corpus=["a tiny corpus"] * 3, vocab_size=300)
    assert tokenizer.decode(tokenizer("a tiny corpus")["input_ids"]) == "a tiny corpus"
    assert build_llm_tokenizer("v1").bos_token == "<s>"
    with pytest.raises(TGLlavaConfigError, match="corpus is empty"):
        build_llm_tokenizer("qwen_2", corpus=[])
    with pytest.raises(TGLlavaConfigError, match="unknown conversation template"):
        build_llm_tokenizer("mistral")
    with pytest.raises(TGLlavaConfigError, match="num_merges must be in"):
        build_guide_tokenizer(10**6)
