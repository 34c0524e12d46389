"""CLI layer: ``python -m csl_core`` (or ``csl-clean``) ``train | scores | info | duplicates | bench |
bench-real | memorization | import | export | app``, one module per family of commands."""
from __future__ import annotations

import sys

from ..data import DataError
from ..run.store import RunError
from .bench import cmd_bench, cmd_bench_real, cmd_memorization
from .interop import cmd_app, cmd_export, cmd_import
from .parser import build_parser
from .runs import cmd_duplicates, cmd_info, cmd_scores, cmd_train

COMMANDS = {"app": cmd_app, "train": cmd_train, "scores": cmd_scores, "info": cmd_info, "duplicates": cmd_duplicates,
            "bench": cmd_bench, "bench-real": cmd_bench_real, "import": cmd_import, "export": cmd_export,
            "memorization": cmd_memorization}


def main(argv: list[str] | None = None, *, prog: str = "python -m csl_core") -> int:
    """Run the command line with ``argv`` (default ``sys.argv``); returns the exit status: 0, 2 for
    input a person must fix (the message says what), 130 when interrupted.
    """
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "app":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "app":  # everything it does not know goes to streamlit
        args.streamlit_args = [*unknown, *args.streamlit_args]
    try:
        return COMMANDS[args.command](args)
    except (DataError, RunError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run can be continued with --resume", file=sys.stderr)
        return 130


def console_main() -> None:
    """The ``csl-clean`` console script: ``csl-clean train ...``, ``csl-clean app``, and every other command."""
    sys.exit(main(prog="csl-clean"))
