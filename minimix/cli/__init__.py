"""The ``minimix`` command line: ``python -m minimix <command> ...``.

Each command is a module ``minimix/cli/<name>.py`` with ``add_arguments(parser)`` and ``run(args)``
(returning an exit status or None). Commands listed in ``COMMANDS`` whose module does not exist
yet are skipped. Errors a user can fix (a missing dataset or checkpoint, a bad option, a run
directory another process is training in) print one ``minimix <command>: error: ...`` line and
exit with status 2; non-finite numbers (``FloatingPointError``: a diverged run, NaN outputs) one
such line and status 1; Ctrl-C one line and status 130. ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["train", "evaluate", "plot", "rf", "study"]

# Exceptions that mean "the input was wrong", not "minimix has a bug".
USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValueError, KeyError)


def _command_modules():
    for name in COMMANDS:
        try:
            yield name, importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":  # the command exists but one of its imports is missing
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minimix", description="minimix: MixConv and MixNet from scratch in NumPy.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _command_modules():
        summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None
        sub = commands.add_parser(name, help=summary, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .. import perf

    # A command is a program, not a library call: it makes minimix's process-wide speed settings
    # (one BLAS thread, Numba's TBB pool, the allocator) before any kernel runs; `train` then
    # sets its --threads.
    perf.configure()
    from ..training.lock import RunDirectoryLocked

    try:
        status = args._run(args)
    except (*USER_ERRORS, RunDirectoryLocked, FloatingPointError) as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"minimix {args.command}: error: {message}", file=sys.stderr)
        return 1 if isinstance(err, FloatingPointError) else 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\nminimix {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)
