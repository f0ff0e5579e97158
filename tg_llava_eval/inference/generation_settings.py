"""Decoding settings: one validator for every entry point (VLMEvalKit, lmms-eval, ``run.py``).

Both toolkits describe decoding with the same few keywords, LLaVA-style: ``max_new_tokens``,
``temperature``, ``top_p``, ``num_beams``, ``do_sample`` (and lmms-eval's ``until`` stop strings).
:meth:`GenerationSettings.from_kwargs` reads them with one rule, so a setting means the same thing
whichever toolkit passes it:

* ``do_sample: false`` decodes greedily whatever the temperature (``top_p`` is dropped);
* ``do_sample: true`` samples, at temperature 1 (transformers' default) when no positive one is
  given;
* no ``do_sample``: sampling exactly when ``temperature > 0``.

VLMEvalKit's LLaVA-1.5 keywords default ``do_sample`` to false, so there a temperature alone stays
greedy, as in VLMEvalKit's own LLaVA wrapper. Values are checked before any model is loaded; a bad
one raises naming where it came from and the key. See docs/architecture.md ("Inference").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import TGLlavaConfigError

#: The keywords :meth:`GenerationSettings.from_kwargs` reads; other keys are the caller's business.
GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "num_beams", "do_sample", "until")


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """Validated decoding settings (the decoding fields of a ``GenerationRequest``).

    Attributes:
        max_new_tokens: Upper bound on the answer in LLM tokens; ``None`` = the engine's default.
        temperature: Sampling temperature; 0 means greedy decoding.
        top_p: Nucleus threshold when sampling (``None`` = off).
        num_beams: Beam-search width (1 = none).
        stop: Strings that end the answer.

    Raises:
        TGLlavaConfigError: A value of the wrong type or range (names the field).
    """

    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float | None = None
    num_beams: int = 1
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_ranges("GenerationSettings", self.max_new_tokens, self.temperature, self.top_p, self.num_beams)

    @property
    def greedy(self) -> bool:
        """No sampling (temperature 0)."""
        return self.temperature == 0

    def request_fields(self) -> dict[str, Any]:
        """The ``GenerationRequest`` keyword arguments of these settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_kwargs(
        cls, kwargs: Mapping[str, Any], *, where: str, defaults: GenerationSettings | None = None
    ) -> GenerationSettings:
        """Read toolkit keywords (rules in the module docstring).

        Args:
            kwargs: Any mapping; only :data:`GENERATION_KEYS` are read. Numbers may come as strings
                (lmms-eval's ``--gen_kwargs`` parser leaves some so).
            where: Where the keywords come from, for messages (``task mme: gen_kwargs``).
            defaults: Settings for the keys that are absent (default: :class:`GenerationSettings`'s).

        Returns:
            The settings.

        Raises:
            TGLlavaConfigError: (a ``ValueError``) a bad value, naming ``where`` and the key.
        """
        base = defaults or cls()
        until = kwargs.get("until", base.stop)
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
            raise TGLlavaConfigError(f"{where} until must be a string or a list of strings, got {until!r}")
        max_new_tokens = kwargs.get("max_new_tokens", base.max_new_tokens)
        if max_new_tokens is not None:
            max_new_tokens = positive_int(max_new_tokens, f"{where} max_new_tokens")
        num_beams = positive_int(kwargs.get("num_beams") or base.num_beams, f"{where} num_beams")
        temperature = _number(kwargs.get("temperature", base.temperature) or 0.0, f"{where} temperature")
        top_p = kwargs.get("top_p", base.top_p)
        top_p = None if top_p is None else _number(top_p, f"{where} top_p")
        do_sample = kwargs.get("do_sample")
        if do_sample is not None and not isinstance(do_sample, bool):
            raise TGLlavaConfigError(f"{where} do_sample must be true or false, got {do_sample!r}")
        if do_sample is False:
            temperature = 0.0
        elif do_sample is True and temperature == 0.0:
            temperature = 1.0
        if temperature == 0.0:
            top_p = None
        _check_ranges(where, max_new_tokens, temperature, top_p, num_beams)
        return cls(max_new_tokens, temperature, top_p, num_beams, tuple(s for s in until if s))


def _check_ranges(where: str, max_new_tokens: Any, temperature: Any, top_p: Any, num_beams: Any) -> None:
    """Raise naming ``where`` and the field for a value out of range."""
    if max_new_tokens is not None and (not _is_int(max_new_tokens) or max_new_tokens < 1):
        raise TGLlavaConfigError(f"{where} max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if not _is_int(num_beams) or num_beams < 1:
        raise TGLlavaConfigError(f"{where} num_beams must be a positive integer, got {num_beams!r}")
    if not temperature >= 0:
        raise TGLlavaConfigError(f"{where} temperature must be >= 0, got {temperature!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise TGLlavaConfigError(f"{where} top_p must be in (0, 1], got {top_p!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any, name: str) -> int:
    """``value`` as a positive int (``3`` or ``"3"``; not ``1.5``, ``True`` or ``0``)."""
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if not _is_int(value) or value < 1:
        raise TGLlavaConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    """``value`` as a float (numbers or numeric strings; not booleans)."""
    if isinstance(value, bool):
        raise TGLlavaConfigError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TGLlavaConfigError(f"{name} must be a number, got {value!r}") from None
