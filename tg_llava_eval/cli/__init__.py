"""The ``tg-llava-eval`` command line.

Each sub-command lives in its own module of this package, imported lazily so that e.g.
``tg-llava-eval collect`` (pure pandas) never pays for importing torch. A sub-command module
defines:

* ``HELP``: one line shown by ``tg-llava-eval --help``;
* ``add_arguments(parser: argparse.ArgumentParser) -> None``;
* ``run(args: argparse.Namespace) -> int``: the exit status.

``main(argv=None)`` is the console-script entry point. Errors are one line on stderr, with no
traceback unless ``-v``: exit status 2 for a usage error (:class:`~tg_llava_eval.errors.TGLlavaUsageError`,
or a bad value of a known kind: :class:`~tg_llava_eval.errors.TGLlavaConfigError`), 1 for a failure
at run time (any other error). Sub-commands check their arguments before importing the heavy
stacks (:mod:`.validation`). The case list is docs/errors.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ..errors import TGLlavaConfigError, TGLlavaError, TGLlavaUsageError

logger = logging.getLogger(__name__)
#: Exit statuses (argparse's own usage errors are 2 as well).
EXIT_FAILURE, EXIT_USAGE = 1, 2

#: sub-command name -> module that implements it (lazy registry; order = order in --help).
SUBCOMMANDS: dict[str, str] = {
    "create": "tg_llava_eval.cli.create",
    "convert": "tg_llava_eval.cli.convert",
    "chat": "tg_llava_eval.cli.chat",
    "train": "tg_llava_eval.cli.train",
    "collect": "tg_llava_eval.cli.collect",
    "leaderboard": "tg_llava_eval.cli.leaderboard",
    "demo": "tg_llava_eval.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    """Top-level parser; sub-command parsers are filled from their modules on demand."""
    parser = argparse.ArgumentParser(
        prog="tg-llava-eval",
        description="Train, evaluate and compare TG-LLaVA models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def _lazy_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build a parser that imports only the sub-command actually named in ``argv``."""
    wanted = next((a for a in argv if not a.startswith("-")), None)
    if wanted in SUBCOMMANDS:
        parser = argparse.ArgumentParser(prog="tg-llava-eval")
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        module = importlib.import_module(SUBCOMMANDS[wanted])
        sub_parser = sub.add_parser(wanted, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
        return parser
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tg-llava-eval``; returns the exit status (also used by the console script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _lazy_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - the one place every sub-command's error becomes one line
        usage = isinstance(error, (TGLlavaUsageError, TGLlavaConfigError))
        if args.verbose:
            logger.exception("tg-llava-eval %s failed", args.command)
        # One line on stderr whatever the logging set-up (argparse's own errors look the same).
        kind = "" if usage or isinstance(error, TGLlavaError) else f"{type(error).__name__}: "
        message = " ".join(str(error).split("\n"))
        print(f"tg-llava-eval {args.command}: error: {kind}{message}", file=sys.stderr)
        return EXIT_USAGE if usage else EXIT_FAILURE


