"""CLI layer: ``python -m csl_core`` (or ``csl-clean``) ``train | scores | info | audit | duplicates | bench |
bench-real | memorization | import | export | app``, one module per family of commands.

A command's module is imported only after the command line is parsed, so ``--help`` and a mistyped
option answer without loading torch.
"""
from __future__ import annotations

import sys
import traceback

from ..errors import REPORT_BUG, CSLError
from .parser import COMMANDS, build_parser


def command(name: str):
    """The function that runs command ``name`` (its module imported now)."""
    return COMMANDS[name].run


def main(argv: list[str] | None = None, *, prog: str = "python -m csl_core") -> int:
    """Run the command line with ``argv`` (default ``sys.argv``); returns the exit status: 0, 2 for
    input a person must fix (a :class:`CSLError` or a file-system error: one line says what), 130 when
    interrupted, 1 for anything else (a bug: its traceback is printed, with where to report it).
    """
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "app":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "app":  # everything it does not know goes to streamlit
        args.streamlit_args = [*unknown, *args.streamlit_args]
    try:
        return command(args.command)(args)
    except (CSLError, OSError) as e:   # what a person acts on: their input, their files (named in the message)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run can be continued with --resume", file=sys.stderr)
        return 130
    except Exception:   # noqa: BLE001 -- anything else is a bug: its traceback, and where to take it
        traceback.print_exc()
        print(f"\n{REPORT_BUG}", file=sys.stderr)
        return 1


def console_main() -> None:
    """The ``csl-clean`` console script: ``csl-clean train ...``, ``csl-clean app``, and every other command."""
    sys.exit(main(prog="csl-clean"))
