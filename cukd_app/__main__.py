"""``cukd-app``: start the desktop application."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``cukd-app``."""
    p = argparse.ArgumentParser(prog="cukd-app", description="CUKD Image Search")
    p.add_argument("--library", default=None,
                   help="open this library folder (catalog and indexes; default: per user)")
    p.add_argument("--search", default=None, help="search with this image at start-up")
    p.add_argument("--duplicates", action="store_true",
                   help="open the duplicates view at start-up")
    p.add_argument("--model", default=None,
                   help="model file (default: the setting, then resources/models/default.pt); "
                        "'tiny' uses the built-in test encoder")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="keep settings, cache and logs under DIR (scripted runs)")
    p.add_argument("--quit-after", type=float, default=None, metavar="SECONDS",
                   help="close the window after SECONDS (for scripted checks)")
    p.add_argument("--self-test", action="store_true",
                   help="check this installation (imports, model, encoding, index, window), "
                        "print a report and exit 0 or 1; uses --model, else $CUKD_MODEL, "
                        "else the default model")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cukd-app``."""
    args = build_parser().parse_args(argv)
    from core.runtime import tune_allocator

    tune_allocator()  # 1.3-2.6x faster CPU inference and training (indexing, the wizard)
    if args.self_test:
        from cukd_app.selftest import run_self_test

        return run_self_test(args.model)
    from cukd_app.app import run

    code = run(args)
    exit_now(code)
    return code  # (not reached)


def exit_now(code: int) -> None:
    """End the process at once once the window has closed.

    By then everything is saved and closed (settings, window state, the library's index and
    catalog; see ``AppController.shutdown``). What is left is the interpreter's own
    tear-down: unloading torch and the other native libraries took about a second after
    Quit, for nothing the user keeps. Logs and standard streams are flushed first.
    """
    import contextlib
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()  # packaged builds (build.spec) that start processes
    sys.exit(main())
