"""The project's error type and the one way the scripts report it.

Bad input a user can fix (a file, a flag value, a download, an archive, a checkpoint) raises `ASRError` or a
subclass, with a message of the form `<file or value>: <what is wrong> — <what to do>`. The top-level scripts
run their `main` through `run_cli`, which prints that message as one line, `error: <message>`, and exits with
status 2; a traceback only with `--debug` on the command line or `ASR_DEBUG=1` in the environment.
"""

import os
import sys
from collections.abc import Callable

EXIT_ERROR = 2  # exit status for bad input (argparse uses 2 for bad flags too)


class ASRError(Exception):
    """Bad input a user can fix; the message names the file or value and says what to do."""


def debug_requested(argv: list[str] | None = None) -> bool:
    """True when a traceback was asked for: `--debug` among the arguments, or ASR_DEBUG=1."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get("ASR_DEBUG", "") not in ("", "0")


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a script's main; report ASRError (and the OS and value errors bad input raises) as one line.

    `--debug` is removed from argv before main sees it, so no script has to declare it."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    args = [a for a in args if a != "--debug"]
    try:
        return main(args) or 0
    except (ASRError, OSError, ValueError, ImportError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
