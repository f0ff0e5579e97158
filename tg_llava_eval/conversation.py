"""Conversation templates of TG-LLaVA (``plain``, ``vicuna_v1``/``v1``, ``llama_3``, ``qwen_2``).

Plain data and string code, importing no torch: the config validates its ``template`` against
:data:`TEMPLATES` and the processor renders with them, so the names have this one home.

These are the project's own templates, reproducing the official ``tg_llava/conversation.py``
strings byte for byte (golden-tested against the official golden prompts, ``tests/data``).
One more, ``qwen_2_bare``, is ours and not official: ``qwen_2`` without the system turn, the
template of the ``tiny*`` presets (see :data:`TEMPLATES`).
They are deliberately **not** the tokenizers' HF chat templates: the official ``qwen_2`` has its own
system text and no newline after ``<|im_end|>``, ``vicuna_v1`` has no space after ``</s>``, and
``llama_3`` is the LLaVA-style variant (docs/processing.md, "Templates").

A template renders a conversation into :class:`Segment` s — pieces of text flagged as
*supervised* (an assistant answer plus the token that ends it) or not. Joining the segments gives
the exact prompt string; the processor tokenizes the segments to build training labels, so the
label mask comes from the same code that renders the prompt (no separate splitting on separators as
in the official ``preprocess_*`` functions).

Layouts (``{q}`` user message, ``{a}`` answer; the generation prompt stops before ``{a}``)::

    vicuna_v1: {sys} USER: {q} ASSISTANT: {a}</s>USER: {q} ASSISTANT:
    llama_3:   {sys}<|eot_id|><|start_header_id|>user<|end_header_id|>\\n\\n{q}<|eot_id|>
               <|start_header_id|>assistant<|end_header_id|>\\n\\n{a}<|eot_id|>...
    qwen_2:    {sys}<|im_end|><|im_start|>user\\n{q}<|im_end|><|im_start|>assistant\\n{a}<|im_end|>...
    qwen_2_bare: <|im_start|>user\\n{q}<|im_end|><|im_start|>assistant\\n{a}<|im_end|>...
    plain:     generation "{q}\\n"; training "<image>{a}\\n" (the question is replaced by the image,
               exactly one human and one assistant turn, as the official ``preprocess_plain``)

The ``<image>`` marker rules of the official data pipeline also live here:
:func:`move_image_marker_to_front` (``preprocess_multimodal``: delete, strip, prepend
``"<image>\\n"``) and :func:`strip_image_markers` (the guide-text cleaning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .errors import TGLlavaConfigError, TGLlavaInputError

#: Role names used by templates.
USER = "user"
ASSISTANT = "assistant"
#: LLaVA data-format role names (``{"from": "human"|"gpt", "value": ...}``) → template roles.
LLAVA_ROLES = {"human": USER, "gpt": ASSISTANT}


@dataclass(frozen=True)
class Segment:
    """A piece of a rendered conversation.

    Attributes:
        text: The exact characters.
        supervised: ``True`` for an assistant answer together with its end separator (these
            tokens get labels in training); ``False`` for everything else (system text, user turns,
            role headers), which is masked with -100.
    """

    text: str
    supervised: bool


@dataclass(frozen=True)
class Message:
    """One turn of a conversation: ``role`` is :data:`USER` or :data:`ASSISTANT`."""

    role: str
    text: str


def count_image_markers(text: str, image_token: str) -> int:
    """Number of ``image_token`` occurrences in ``text``."""
    return text.count(image_token)


def strip_image_markers(text: str, image_token: str) -> str:
    """Delete every image marker, then strip outer whitespace (inner whitespace is kept).

    This is the official guide-text cleaning (``.replace('<image>', '').strip()``): e.g.
    ``"  Look at this: <image> what is it?  "`` → ``"Look at this:  what is it?"``.
    """
    return text.replace(image_token, "").strip()


def move_image_marker_to_front(text: str, image_token: str) -> str:
    """Move the image marker to the front of its turn, as the official ``preprocess_multimodal``.

    The marker is deleted, the rest stripped, ``image_token + "\\n"`` prepended and the result
    stripped again (so a turn that is only the marker stays just the marker).

    Args:
        text: A turn containing the marker.
        image_token: The marker, ``"<image>"``.

    Returns:
        E.g. ``"Q1\\n<image>"`` → ``"<image>\\nQ1"``.
    """
    return (image_token + "\n" + strip_image_markers(text, image_token)).strip()


def _check_alternation(messages: Sequence[Message], *, last_role: str) -> None:
    """Raise unless ``messages`` is user, assistant, user, ... ending with ``last_role``."""
    if not messages:
        raise TGLlavaInputError("the conversation is empty")
    for index, message in enumerate(messages):
        expected = USER if index % 2 == 0 else ASSISTANT
        if message.role != expected:
            raise TGLlavaInputError(
                f"turn {index} has role {message.role!r}, expected {expected!r}: a conversation must "
                "alternate user/assistant turns starting with the user"
            )
    if messages[-1].role != last_role:
        raise TGLlavaInputError(f"the conversation must end with a {last_role!r} turn, it ends with {messages[-1].role!r}")


@dataclass(frozen=True)
class ConversationTemplate:
    """A role-marked template (``vicuna_v1``, ``llama_3``, ``qwen_2``).

    Rendering: ``system_text + system_suffix``, then per user turn ``user_prefix + q + user_suffix``,
    per assistant turn ``assistant_prefix`` followed by the supervised ``answer_prefix + a +
    answer_suffix``. A generation prompt ends with ``assistant_prefix``.

    Attributes:
        name: Canonical template name.
        system_text: The official ``conv.system`` string (for ``llama_3`` it starts with
            ``<|begin_of_text|>`` and the system header, exactly as in the official file).
        system_suffix: Separator after the system text.
        user_prefix / user_suffix: Around a user message.
        assistant_prefix: Role header of the assistant (the generation prompt ends here).
        answer_prefix / answer_suffix: Around an answer; supervised together with it (Vicuna's
            space after ``ASSISTANT:`` belongs to the answer's first SentencePiece token, and the
            end separator is what teaches the model to stop).
        stop_text: The string that ends an answer at generation time.
    """

    name: str
    system_text: str
    system_suffix: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    answer_prefix: str
    answer_suffix: str
    stop_text: str

    def segments(self, messages: Sequence[Message], *, add_generation_prompt: bool, image_token: str = "<image>") -> list[Segment]:
        """Render ``messages`` into segments.

        Args:
            messages: Alternating turns starting with the user; ending with the user when
                ``add_generation_prompt`` (inference), with the assistant otherwise (training).
            add_generation_prompt: Append the assistant header after a final user turn.
            image_token: Unused by role-marked templates (kept for the :class:`PlainTemplate` API).

        Returns:
            The segments; ``"".join(s.text for s in segments)`` is the prompt string.

        Raises:
            TGLlavaInputError: empty conversation, wrong role order or wrong final role.
        """
        _check_alternation(messages, last_role=USER if add_generation_prompt else ASSISTANT)
        pieces = [Segment(self.system_text + self.system_suffix, False)]
        for message in messages:
            if message.role == USER:
                pieces.append(Segment(self.user_prefix + message.text + self.user_suffix + self.assistant_prefix, False))
            else:
                pieces.append(Segment(self.answer_prefix + message.text + self.answer_suffix, True))
        return _merge_adjacent(pieces)

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool, image_token: str = "<image>") -> str:
        """The prompt string: the joined :meth:`segments` (same arguments and errors)."""
        return "".join(s.text for s in self.segments(messages, add_generation_prompt=add_generation_prompt, image_token=image_token))


@dataclass(frozen=True)
class PlainTemplate(ConversationTemplate):
    """The ``plain`` template of LLaVA/TG-LLaVA stage-1 (feature alignment) training.

    Generation renders each user message followed by ``"\\n"`` (the official PLAIN style with an
    empty system text and the assistant slot left empty). Training follows ``preprocess_plain``:
    exactly one human and one assistant message; the human text is *replaced* by the image marker,
    giving ``image_token + answer + "\\n"``, with the image part masked and ``answer + "\\n"``
    supervised.
    """

    def segments(self, messages: Sequence[Message], *, add_generation_prompt: bool, image_token: str = "<image>") -> list[Segment]:
        """Render ``messages`` (see the class docstring).

        Raises:
            TGLlavaInputError: more than one exchange (the official code asserts exactly 2
                messages in training; multi-turn generation is impossible in its PLAIN style), a
                wrong role order, or a training sample without an image marker.
        """
        expected = 1 if add_generation_prompt else 2
        _check_alternation(messages, last_role=USER if add_generation_prompt else ASSISTANT)
        if len(messages) != expected:
            raise TGLlavaInputError(
                f"the 'plain' template handles exactly one human turn and one answer (got {len(messages)} "
                "messages); multi-turn samples need a role-marked template such as 'vicuna_v1' or 'qwen_2'"
            )
        if add_generation_prompt:
            return [Segment(self.user_prefix + messages[0].text + self.user_suffix, False)]
        if image_token not in messages[0].text:
            raise TGLlavaInputError(f"the 'plain' template needs an image: the human turn has no {image_token!r} marker")
        return [Segment(image_token, False), Segment(messages[1].text + self.answer_suffix, True)]


def _merge_adjacent(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring segments with the same ``supervised`` flag (fewer tokenisation checks)."""
    merged: list[Segment] = []
    for segment in segments:
        if merged and merged[-1].supervised == segment.supervised:
            merged[-1] = Segment(merged[-1].text + segment.text, segment.supervised)
        else:
            merged.append(segment)
    return merged


_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_LLAMA3_SYSTEM = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)
_QWEN2_SYSTEM = (
    "<|im_start|>system\nA conversation between a user and an LLM-based AI assistant. "
    "The assistant gives helpful and honest answers."
)

#: The templates by canonical name (the official ``conv_templates`` entries TG-LLaVA uses).
TEMPLATES: dict[str, ConversationTemplate] = {
    "plain": PlainTemplate(
        name="plain",
        system_text="",
        system_suffix="",
        user_prefix="",
        user_suffix="\n",
        assistant_prefix="",
        answer_prefix="",
        answer_suffix="\n",
        stop_text="\n",
    ),
    "vicuna_v1": ConversationTemplate(
        name="vicuna_v1",
        system_text=_VICUNA_SYSTEM,
        system_suffix=" ",
        user_prefix="USER: ",
        user_suffix=" ",
        assistant_prefix="ASSISTANT:",
        answer_prefix=" ",
        answer_suffix="</s>",
        stop_text="</s>",
    ),
    "llama_3": ConversationTemplate(
        name="llama_3",
        system_text=_LLAMA3_SYSTEM,
        system_suffix="<|eot_id|>",
        user_prefix="<|start_header_id|>user<|end_header_id|>\n\n",
        user_suffix="<|eot_id|>",
        assistant_prefix="<|start_header_id|>assistant<|end_header_id|>\n\n",
        answer_prefix="",
        answer_suffix="<|eot_id|>",
        stop_text="<|eot_id|>",
    ),
    "qwen_2": ConversationTemplate(
        name="qwen_2",
        system_text=_QWEN2_SYSTEM,
        system_suffix="<|im_end|>",
        user_prefix="<|im_start|>user\n",
        user_suffix="<|im_end|>",
        assistant_prefix="<|im_start|>assistant\n",
        answer_prefix="",
        answer_suffix="<|im_end|>",
        stop_text="<|im_end|>",
    ),
}
# Not official: qwen_2 without the system turn, for the tiny presets. The official system text is
# 24 of the ~80 tokens of a one-question tiny training sample (tiny BPE, 24 image tokens) and slows
# a randomly initialised LLM's learning to read the image by about half (docs/demo.md). Same
# tokenizer family and stop token as qwen_2.
TEMPLATES["qwen_2_bare"] = replace(TEMPLATES["qwen_2"], name="qwen_2_bare", system_text="", system_suffix="")
#: Other names of the same templates (the official ``conv_templates['v1']`` is ``vicuna_v1``).
TEMPLATE_ALIASES = {"v1": "vicuna_v1"}


def get_template(template: str | ConversationTemplate) -> ConversationTemplate:
    """Look a template up by name or alias (an instance is returned unchanged).

    Raises:
        TGLlavaConfigError: unknown name (the message lists the known ones).
    """
    if isinstance(template, ConversationTemplate):
        return template
    name = TEMPLATE_ALIASES.get(template, template)
    if name not in TEMPLATES:
        known = sorted([*TEMPLATES, *TEMPLATE_ALIASES])
        raise TGLlavaConfigError(f"unknown conversation template {template!r}; known: {known}")
    return TEMPLATES[name]


def messages_from_llava(conversations: Sequence[dict]) -> list[Message]:
    """Convert LLaVA-format turns (``{"from": "human"|"gpt", "value": str}``) to messages.

    Raises:
        TGLlavaInputError: empty list, a turn that is not such a dict, or an unknown role (named
            with its index).
    """
    if not conversations:
        raise TGLlavaInputError("the conversation is empty")
    messages = []
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise TGLlavaInputError(f"turn {index} must be a dict with a string 'value', got {turn!r}")
        role = turn.get("from")
        if role not in LLAVA_ROLES:
            raise TGLlavaInputError(f"turn {index} has unknown role {role!r}; expected one of {sorted(LLAVA_ROLES)}")
        messages.append(Message(LLAVA_ROLES[role], turn["value"]))
    return messages
