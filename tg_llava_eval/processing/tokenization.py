"""LLM-side tokenisation: rendered segments → ids and training labels; image-token expansion.

Labels (reference ``tg_llava_architecture.md`` §5): every token gets -100 except the assistant
answers and the separator that ends each of them (``</s>``, ``<|eot_id|>``, ``<|im_end|>``, or
``"\\n"`` for ``plain``). The official code finds these positions by splitting the rendered string
on separators and counting tokens of the pieces, with per-template fudge terms (``-2``, ``-1`` per
round for Llama-3's extra BOS, ...), and silently drops a sample's labels when the count disagrees.

Here the template renders :class:`~tg_llava_eval.conversation.Segment` s flagged supervised or not, and the
label boundaries are measured by tokenising each segment **in its context**: the text up to the end
of segment ``k`` is tokenised and must be an exact prefix of the tokenisation of the whole string;
its length is the boundary. Tokenising segments in isolation would be wrong for SentencePiece
tokenizers, whose leading ``▁`` depends on what precedes the text (``"</s>USER"`` vs ``"USER"``).
The check is a real verification: if a boundary falls inside a token (a merge across the boundary),
the prefix tokenisation is not a prefix of the full one and :class:`LabelMismatchError` is raised,
so the training data layer can skip and count the sample instead of training on shifted labels.
A tokenizer that *appends* special tokens (an EOS) fails this check on every sample: LLaVA-style
tokenizers add at most a BOS.

Image tokens follow the llava-hf convention: the prompt contains one ``<image>`` special token per
image, and each is expanded to ``num_image_tokens`` copies of its id (the model scatters the visual
features there after a count check).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..conversation import Segment
from ..errors import TGLlavaInputError

#: Label of tokens that carry no loss (PyTorch's ``CrossEntropyLoss`` default ``ignore_index``).
IGNORE_INDEX = -100


class LabelMismatchError(TGLlavaInputError):
    """The tokenisation of a rendered training sample does not split at its segment boundaries.

    Raised by :func:`tokenize_segments`; the training data layer catches it to skip (and count)
    the sample. It is a :class:`~tg_llava_eval.errors.TGLlavaInputError`, so generic handlers of
    bad samples catch it too.
    """


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with the tokenizer's own special tokens (e.g. Vicuna's BOS ``<s>``).

    This is the one call used for prompts in training and inference alike, so both see the same
    ids (the official code also calls the tokenizer with its defaults).
    """
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def tokenize_segments(tokenizer, segments: Sequence[Segment]) -> tuple[list[int], list[int]]:
    """Tokenise a rendered conversation and label its supervised segments.

    Args:
        tokenizer: The LLM tokenizer.
        segments: From :meth:`ConversationTemplate.segments`; joined they are the full prompt.

    Returns:
        ``(input_ids, labels)``, equal length; ``labels[i] = input_ids[i]`` on tokens of supervised
        segments and :data:`IGNORE_INDEX` elsewhere (the tokenizer's BOS included).

    Raises:
        LabelMismatchError: a segment boundary falls inside a token (the message names the
            segment and shows the tokens on both sides).
    """
    full_text = "".join(segment.text for segment in segments)
    input_ids = encode(tokenizer, full_text)
    labels = [IGNORE_INDEX] * len(input_ids)
    start, prefix = 0, ""
    for index, segment in enumerate(segments):
        prefix += segment.text
        if index == len(segments) - 1:
            end = len(input_ids)
        else:
            prefix_ids = encode(tokenizer, prefix)
            end = len(prefix_ids)
            if end < start or input_ids[:end] != prefix_ids:
                raise LabelMismatchError(_mismatch_message(tokenizer, segments, index, input_ids, prefix_ids))
        if segment.supervised:
            labels[start:end] = input_ids[start:end]
        start = end
    return input_ids, labels


def _mismatch_message(tokenizer, segments: Sequence[Segment], index: int, full_ids: list[int], prefix_ids: list[int]) -> str:
    """Explain where the tokenisation of segment ``index``'s end differs from the full string."""
    common = 0
    while common < min(len(full_ids), len(prefix_ids)) and full_ids[common] == prefix_ids[common]:
        common += 1
    window = slice(max(0, common - 3), common + 3)
    return (
        f"label mismatch at the end of segment {index} ({segments[index].text[-40:]!r}): the tokens of the "
        f"text up to there are not a prefix of the tokens of the whole sample (first difference at token "
        f"{common}: segment-wise {tokenizer.convert_ids_to_tokens(prefix_ids[window])} vs whole "
        f"{tokenizer.convert_ids_to_tokens(full_ids[window])}); the sample is skipped rather than trained "
        "with shifted labels"
    )


def expand_image_tokens(
    input_ids: Sequence[int],
    image_token_id: int,
    num_image_tokens: int,
    labels: Sequence[int] | None = None,
) -> tuple[list[int], list[int] | None]:
    """Replace each image token by ``num_image_tokens`` copies (labels: :data:`IGNORE_INDEX`).

    Args:
        input_ids: Token ids containing zero or more ``image_token_id``.
        image_token_id: Id of ``<image>`` in the LLM tokenizer.
        num_image_tokens: Visual tokens per image (``config.num_image_tokens``: 576 patches, + 64
            TG-DP latents for TG-LLaVA).
        labels: Optional labels aligned with ``input_ids``.

    Returns:
        ``(expanded_ids, expanded_labels)`` (``None`` labels stay ``None``).
    """
    expanded_ids: list[int] = []
    expanded_labels: list[int] | None = None if labels is None else []
    for position, token in enumerate(input_ids):
        if token == image_token_id:
            expanded_ids.extend([image_token_id] * num_image_tokens)
            if expanded_labels is not None:
                expanded_labels.extend([IGNORE_INDEX] * num_image_tokens)
        else:
            expanded_ids.append(token)
            if expanded_labels is not None:
                expanded_labels.append(labels[position])
    return expanded_ids, expanded_labels
