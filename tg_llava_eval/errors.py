"""Exceptions shared by every layer of tg-llava-eval.

They all derive from :class:`ValueError` so that callers who only know the standard library can
still catch them, and each carries a message that names the offending input (file, row, argument)
— the project rule is that bad input is reported where it entered, never as a crash deep inside
torch.
"""


class TGLlavaError(ValueError):
    """Base class of every error raised on purpose by tg-llava-eval."""


class TGLlavaConfigError(TGLlavaError):
    """An inconsistent model, processor or recipe configuration (names the fields involved)."""


class TGLlavaInputError(TGLlavaError):
    """A bad sample: unreadable/corrupt/oversized image, empty or unusable text, too many
    ``<image>`` markers, ... The message names the input (file path, row id or argument)."""


class TGLlavaCheckpointError(TGLlavaError):
    """A checkpoint that cannot be loaded or converted strictly (missing/unexpected keys, shapes)."""


class TGLlavaUsageError(TGLlavaError):
    """A command-line argument that cannot work (a missing path, a folder of the wrong kind, an
    unknown name): found before any heavy work starts; the CLIs exit with status 2."""
