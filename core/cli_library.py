"""``cukd library …``, ``cukd search`` and ``cukd duplicates``: the photo library from a shell.

Commands (wired into :mod:`core.cli` by :func:`add_commands`)::

    cukd library add PATH [--polling | --no-watch] [--exclude GLOB]...
    cukd library remove PATH
    cukd library scan [--json] [--no-progress]
    cukd library status [--errors] [--json]
    cukd library watch [--no-scan]            # until Ctrl+C
    cukd search IMAGE [-k N] [--radius R] [--robust] [--json]
    cukd duplicates [--json]

Every command takes ``--library DIR`` (default: ``$CUKD_LIBRARY``, else the per-user data
folder from platformdirs) and ``--model PATH`` (default: ``$CUKD_MODEL``, else
``resources/models/default.pt`` next to the ``core`` package). Only ``scan``, ``watch`` and
``search`` load the model; the others work on the catalog with the library's own codes.

Test-only: ``--model tiny:`` (or ``tiny:BITS``, or ``CUKD_MODEL=tiny:``) selects the
deterministic :class:`core.library.testing.TinyEncoder` instead of a model file. Its codes
are meaningless for real photos; it exists so tests and smoke runs need no trained model.

Searching with a model other than the one the library was indexed with is refused (the
library would have to drop its codes); ``cukd library scan --model NEW`` re-encodes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MODEL",
    "TINY_PREFIX",
    "CliError",
    "add_commands",
    "build_parser",
    "default_model_path",
    "load_encoder",
    "main",
    "resolve_library_dir",
]

log = logging.getLogger("cukd.library")

#: ``cukd duplicates --level`` choices: core.library.search.DUPLICATE_LEVELS, spelled out
#: so that the parser needs no faiss import (a test checks that they agree).
DUPLICATE_LEVELS = ("strict", "normal", "loose")

#: Prefix of the test-only ``--model`` value selecting the TinyEncoder.
TINY_PREFIX = "tiny:"
#: The shipped default model, relative to the folder holding the ``core`` package.
DEFAULT_MODEL = Path("resources") / "models" / "default.pt"
MODEL_ENV = "CUKD_MODEL"
LIBRARY_ENV = "CUKD_LIBRARY"
#: ``status`` shows per-folder file counts up to this many files (counting reads every row).
_ROOT_COUNT_LIMIT = 200_000


class CliError(Exception):
    """A user-facing error: printed as ``cukd COMMAND: error: MESSAGE``, exit status 2."""


# --------------------------------------------------------------------------- resolution


def default_model_path() -> Path:
    """``resources/models/default.pt`` next to the installed ``core`` package (or repo)."""
    return Path(__file__).resolve().parent.parent / DEFAULT_MODEL


def resolve_library_dir(arg: str | os.PathLike[str] | None) -> Path:
    """``--library`` → ``$CUKD_LIBRARY`` → the per-user default library folder."""
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    from core.library import default_library_dir

    return default_library_dir()


def _model_spec(arg: str | None) -> str:
    return arg or os.environ.get(MODEL_ENV) or str(default_model_path())


def load_encoder(spec: str | None) -> Any:
    """Load the encoder named by ``--model`` (see the module docstring).

    Raises:
        CliError: the model file is missing or unusable.
    """
    spec = _model_spec(spec)
    if spec.startswith(TINY_PREFIX):
        from core.library.testing import TinyEncoder

        rest = spec[len(TINY_PREFIX):]
        try:
            bits = int(rest) if rest else 64
        except ValueError:
            raise CliError(f"--model {spec}: expected tiny: or tiny:BITS") from None
        return TinyEncoder(n_bits=bits)
    path = Path(spec).expanduser()
    if not path.is_file():
        hint = (" (the default model is not installed; pass --model PATH or set "
                f"${MODEL_ENV})" if path == default_model_path() else "")
        raise CliError(f"model file not found: {path}{hint}")
    try:
        from core.encoder import Encoder
    except ImportError as exc:  # pragma: no cover - the encoder module is part of core
        raise CliError(f"cannot load models: {exc}") from exc
    from core.checkpoint import CheckpointError

    try:
        enc = Encoder.from_file(path)
    except CheckpointError as exc:
        raise CliError(f"{path}: {exc}") from exc
    log.info("loaded %r", enc)
    return enc


class _CatalogEncoder:
    """Stands in for the library's own model where nothing is encoded (status, duplicates,
    add/remove): opening the library with it keeps its codes. Encoding raises."""

    input_size = 64

    def __init__(self, model_id: str, n_bits: int, embed_dim: int) -> None:
        self.model_id, self.n_bits, self.embed_dim = model_id, n_bits, embed_dim

    def encode(self, images: Any) -> Any:
        raise RuntimeError("no model loaded for this command")


def _active_model(directory: Path) -> tuple[str, int, int] | None:
    """``(model_id, n_bits, embed_dim)`` the library was indexed with, if any."""
    from core.library.catalog import Catalog
    from core.library.library import CATALOG_FILE

    with Catalog(directory / CATALOG_FILE) as cat:
        mid = cat.active_model
        sizes = cat.model_sizes(mid) if mid else None
    return (mid, *sizes) if mid and sizes else None


@contextmanager
def _open_library(a: argparse.Namespace, *, need_model: bool) -> Iterator[Any]:
    """Open the library of ``--library``; with ``need_model`` load ``--model`` first.

    Without ``need_model`` the library's own model is kept (a stand-in encoder); a library
    that was never opened with a model yields ``None`` (callers use the catalog directly).
    """
    from core.library import Library

    directory = resolve_library_dir(getattr(a, "library", None))
    from core.library.library import CATALOG_FILE

    active = _active_model(directory) if (directory / CATALOG_FILE).exists() else None
    if need_model:
        encoder = load_encoder(getattr(a, "model", None))
        if active is not None and active[0] != encoder.model_id:
            if getattr(a, "command", None) == "search":
                raise CliError(
                    f"the library was indexed with model {active[0]}, not {encoder.model_id};"
                    " search with the same --model, or re-encode with `cukd library scan "
                    "--model ...`")
            print(f"model changed from {active[0]} to {encoder.model_id}: every file is "
                  "re-encoded", file=sys.stderr)
    elif active is None:
        yield None
        return
    else:
        encoder = _CatalogEncoder(*active)
    lib = Library.open(directory, encoder)
    try:
        yield lib
    finally:
        lib.close()


# --------------------------------------------------------------------------- output helpers


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "never"


def _dims(w: int | None, h: int | None) -> str:
    return f"{w}x{h}" if w and h else "?"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _scan_summary(r: Any, *, prefix: str = "") -> str:
    return (f"{prefix}{r.seen} files in {r.seconds:.1f} s: {r.added} new, {r.updated} changed, "
            f"{r.moved} moved, {r.deleted} deleted, {r.unchanged} unchanged; "
            f"{r.encoded} encoded, {len(r.errors)} failed")


def _print_errors(errors: Any, limit: int | None = None, stream: Any = None) -> None:
    stream = stream or sys.stdout
    shown = list(errors) if limit is None else list(errors)[:limit]
    for e in shown:
        print(f"  {e.path}: {e.reason}" + (f" ({e.detail})" if e.detail else ""), file=stream)
    if limit is not None and len(errors) > limit:
        print(f"  ... and {len(errors) - limit} more (cukd library status --errors)",
              file=stream)


class _StopFlag:
    """Ctrl+C once → ask the scan to stop after the current batch; twice → interrupt."""

    def __init__(self) -> None:
        self.stop = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print("\nstopping after the current batch (Ctrl+C again to abort)", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def __call__(self) -> bool:
        return self.stop


def _progress_callback(bar: Any) -> Callable[[Any], None]:
    """ScanProgress → ``core.cli.ProgressBar`` (walk: files found; encode: done/total)."""
    state: dict[str, Any] = {"phase": None, "start": time.monotonic(), "last": time.monotonic()}

    def on_progress(p: Any) -> None:
        now = time.monotonic()
        if p.phase != state["phase"]:  # a phase starts where the previous one ended
            state["phase"], state["start"] = p.phase, state["last"]
        state["last"] = now
        elapsed = now - state["start"]
        rate = p.done / elapsed if elapsed > 0.05 else 0.0
        if p.phase == "walk":
            bar.update("finding files", p.done, max(p.total, p.done), rate, None)
            return
        total = max(p.total, p.done)
        eta = (total - p.done) / rate if rate > 0 else None
        bar.update("indexing" if p.phase == "encode" else p.phase, p.done, total, rate, eta)

    return on_progress


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- commands


def _cmd_add(a: argparse.Namespace) -> int:
    path = Path(a.path).expanduser()
    if not path.is_dir():
        raise CliError(f"not a folder: {path}")
    mode = "off" if a.no_watch else "polling" if a.polling else "native"
    excludes = tuple(a.exclude or ())
    with _open_library(a, need_model=False) as lib:
        if lib is None:  # a new library: no model yet, the catalog alone holds the root
            from core.library.catalog import Catalog
            from core.library.library import CATALOG_FILE

            directory = resolve_library_dir(a.library)
            with Catalog(directory / CATALOG_FILE) as cat:
                root = cat.add_root(path.resolve(), mode, excludes)
                root = _update_root(cat, root, mode, excludes, a)
        else:
            root = lib.add_root(path.resolve(), watch_mode=mode, excludes=excludes)
            root = _update_root(lib.catalog, root, mode, excludes, a)
    extra = f", excluding {', '.join(root.excludes)}" if root.excludes else ""
    print(f"library folder {root.path} (watch: {root.watch_mode}{extra})")
    print("run `cukd library scan` to index it")
    return 0


def _update_root(cat: Any, root: Any, mode: str, excludes: tuple[str, ...],
                 a: argparse.Namespace) -> Any:
    """Re-adding a folder changes its options when they were given explicitly."""
    explicit_mode = a.no_watch or a.polling
    if explicit_mode and root.watch_mode != mode:
        cat.set_root_options(root.id, watch_mode=mode)
    if excludes and tuple(root.excludes) != excludes:
        cat.set_root_options(root.id, excludes=excludes)
    return cat.root(root.id)


def _cmd_remove(a: argparse.Namespace) -> int:
    with _open_library(a, need_model=False) as lib:
        if lib is None:
            from core.library.catalog import Catalog
            from core.library.library import CATALOG_FILE

            with Catalog(resolve_library_dir(a.library) / CATALOG_FILE) as cat:
                root = _find_root(cat, a.path)
                cat.remove_root(root.id)
            n = 0
        else:
            root = _find_root(lib.catalog, a.path)
            n = len(lib.catalog.files_in_scope(root.id))
            lib.remove_root(root.id)
    print(f"removed library folder {root.path} ({n} files forgotten; nothing on disk was "
          "touched)")
    return 0


def _find_root(cat: Any, arg: str) -> Any:
    root = cat.root_by_path(Path(arg).expanduser())
    if root is None and arg.isdigit():
        root = cat.root(int(arg))
    if root is None:
        known = ", ".join(r.path for r in cat.roots()) or "none"
        raise CliError(f"not a library folder: {arg} (library folders: {known})")
    return root


def _cmd_scan(a: argparse.Namespace) -> int:
    from core.cli import ProgressBar

    with _open_library(a, need_model=True) as lib:
        if not lib.roots():
            raise CliError("the library has no folders; add one with `cukd library add PATH`")
        bar = ProgressBar() if not a.no_progress else None
        with _StopFlag() as stop:
            try:
                result = lib.scan(on_progress=_progress_callback(bar) if bar else None,
                                  should_stop=stop)
            finally:
                if bar is not None:
                    bar.close()
        indexed = lib.index.ntotal
    if a.json:
        d = dataclasses.asdict(result)
        d["indexed"] = indexed
        _print_json(d)
    else:
        print(_scan_summary(result, prefix="scanned "))
        if result.errors:
            print(f"{_plural(len(result.errors), 'file')} could not be indexed:")
            _print_errors(result.errors, limit=a.max_errors)
        for p in result.offline_roots:
            print(f"offline (not scanned, files kept): {p}")
        if result.cancelled:
            print("scan stopped; run `cukd library scan` again to resume")
        print(f"{indexed} files searchable")
    return 130 if result.cancelled else 0


def _cmd_repair(a: argparse.Namespace) -> int:
    from core.library import Library

    directory = resolve_library_dir(a.library)
    rep = Library.repair(directory)
    if a.json:
        print(json.dumps(dataclasses.asdict(rep), indent=2))
        return 0
    if rep.catalog_problems:
        print(f"catalog was damaged: {'; '.join(rep.catalog_problems[:3])}")
        rows = ", ".join(f"{n} {t}" for t, n in rep.recovered) or "nothing"
        print(f"recovered {rows}; the damaged file is kept as "
              f"{', '.join(rep.moved_aside) or '-'}")
    else:
        print("catalog is sound")
    print(f"{len(rep.caches_removed)} index files dropped (rebuilt at the next open), "
          f"{rep.temps_removed} stale temp files removed")
    print("run `cukd library scan` to re-index whatever was lost")
    return 0


def _cmd_status(a: argparse.Namespace) -> int:
    with _open_library(a, need_model=False) as lib:
        if lib is None:
            from core.library.catalog import Catalog
            from core.library.library import CATALOG_FILE

            directory = resolve_library_dir(a.library)
            with Catalog(directory / CATALOG_FILE) as cat:
                roots = cat.roots()
            d: dict[str, Any] = {
                "directory": str(directory), "model_id": None, "files": 0, "ok": 0,
                "errors": 0, "pending": 0, "indexed": 0,
                "roots": [dataclasses.asdict(r) for r in roots],
                "offline_roots": [r.path for r in roots if not r.online],
                "watching": False, "reencoding_to": None}
            errors: list[Any] = []
        else:
            st = lib.status()
            d = dataclasses.asdict(st)
            d["model_sizes"] = lib.catalog.model_sizes(st.model_id)
            if st.files <= _ROOT_COUNT_LIMIT:  # per-folder counts read every row
                d["root_files"] = {r.id: len(lib.catalog.files_in_scope(r.id))
                                   for r in st.roots}
            errors = lib.catalog.errors(limit=100_000) if a.errors else []
    if a.json:
        if a.errors:
            d["error_files"] = [{"path": e.path, "error": e.error} for e in errors]
        _print_json(d)
        return 0
    print(f"library: {d['directory']}")
    if d["model_id"] is None:
        print("model: none yet (run `cukd library scan`)")
    else:
        sizes = d.get("model_sizes") or (None, None)
        print(f"model: {d['model_id']} ({sizes[0]}-bit codes, {sizes[1]}-d embeddings)")
    print(f"files: {d['files']} ({d['ok']} indexed, {d['errors']} failed, "
          f"{d['pending']} pending); {d['indexed']} searchable")
    if not d["roots"]:
        print("folders: none (add one with `cukd library add PATH`)")
    else:
        print("folders:")
        for r in d["roots"]:
            n = d.get("root_files", {}).get(r["id"])
            ex = f", excludes {', '.join(r['excludes'])}" if r["excludes"] else ""
            count = f"{n} files, " if n is not None else ""
            print(f"  {r['path']}: {count}{'online' if r['online'] else 'OFFLINE'}, "
                  f"watch {r['watch_mode']}{ex}, last scan {_fmt_time(r['last_scan'])}")
    if d.get("reencoding_to"):
        print(f"re-encoding to model {d['reencoding_to']}")
    if a.errors:
        print(f"{_plural(len(errors), 'file')} failed:" if errors else "no failed files")
        for e in errors:
            print(f"  {e.path}: {e.error}")
    return 0


def _cmd_watch(a: argparse.Namespace) -> int:
    from core.cli import ProgressBar

    with _open_library(a, need_model=True) as lib:
        roots = lib.roots()
        if not roots:
            raise CliError("the library has no folders; add one with `cukd library add PATH`")
        watched = [r for r in roots if r.watch_mode != "off"]
        if not watched:
            raise CliError("every library folder has watching off (`cukd library add PATH` "
                           "again without --no-watch turns it on)")
        if not a.no_scan:
            bar = ProgressBar()
            try:
                with _StopFlag() as stop:
                    r = lib.scan(on_progress=_progress_callback(bar), should_stop=stop)
            finally:
                bar.close()
            print(_scan_summary(r, prefix="initial scan: "), flush=True)
            _print_errors(r.errors, limit=a.max_errors)
            if r.cancelled:
                return 130

        def on_result(res: Any) -> None:
            stamp = time.strftime("%H:%M:%S")
            parts = [f"{n} {label}" for n, label in (
                (res.added, "new"), (res.updated, "changed"), (res.moved, "moved"),
                (res.deleted, "deleted")) if n]
            print(f"[{stamp}] indexed: {', '.join(parts) or 'no changes'}"
                  + (f", {len(res.errors)} failed" if res.errors else "")
                  + f" ({lib.index.ntotal} searchable)", flush=True)
            _print_errors(res.errors, limit=a.max_errors)
            for p in res.offline_roots:
                print(f"[{stamp}] offline: {p}", flush=True)

        lib.on_watch_result = on_result
        lib.start_watching()
        for r in watched:
            print(f"watching {r.path} ({r.watch_mode})", flush=True)
        print("press Ctrl+C to stop", flush=True)
        deadline = time.monotonic() + a.duration if a.duration else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
            while not lib.watcher_idle():  # --duration: finish what is in flight
                time.sleep(0.1)
        except KeyboardInterrupt:
            print("\nstopping", file=sys.stderr)
        finally:
            lib.stop_watching()
    return 0


def _hit_dict(rank: int, h: Any) -> dict[str, Any]:
    d = dataclasses.asdict(h)
    d["rank"] = rank
    return d


def _cmd_search(a: argparse.Namespace) -> int:
    from core.imageio import ImageLoadError

    query = Path(a.image).expanduser()
    if not query.exists():
        raise CliError(f"no such file: {query}")
    if a.k < 1:
        raise CliError("-k must be at least 1")
    with _open_library(a, need_model=True) as lib:
        n = lib.index.ntotal
        t0 = time.perf_counter()
        try:
            hits = lib.search(query, k=a.k, radius=a.radius, robust=a.robust)
        except ImageLoadError as exc:
            raise CliError(f"cannot read the query image: {exc}") from exc
        ms = (time.perf_counter() - t0) * 1e3
        model_id = lib.encoder.model_id
    if a.json:
        _print_json({"query": str(query.resolve()), "k": a.k, "radius": a.radius,
                     "robust": a.robust, "model_id": model_id, "searched": n,
                     "milliseconds": round(ms, 2),
                     "results": [_hit_dict(i + 1, h) for i, h in enumerate(hits)]})
        return 0
    if n == 0:
        print("the library is empty: `cukd library add PATH` then `cukd library scan`",
              file=sys.stderr)
    if not hits:
        print("no similar photos found")
        return 0
    print(f"{len(hits)} results among {n} photos ({ms:.0f} ms):")
    print(f"{'#':>3}  {'tier':<14} {'score':>6} {'bits':>4} {'pHash':>5} {'pixels':>11}  path")
    for i, h in enumerate(hits, 1):
        ph = "-" if h.phash_distance is None else str(h.phash_distance)
        print(f"{i:>3}  {h.tier:<14} {h.score:6.3f} {h.hamming:>4} {ph:>5} "
              f"{_dims(h.width, h.height):>11}  {h.path}")
    return 0


def _cmd_duplicates(a: argparse.Namespace) -> int:
    with _open_library(a, need_model=False) as lib:
        groups = [] if lib is None else lib.duplicates(a.level)
    if a.json:
        _print_json([{"tier": g.tier, "files": [
            {"file_id": f.id, "path": f.path, "size": f.size, "width": f.width,
             "height": f.height, "mtime": f.mtime_ns / 1e9} for f in g.files]}
            for g in groups])
        return 0
    if not groups:
        print("no duplicates found")
        return 0
    n_files = sum(len(g.files) for g in groups)
    print(f"{len(groups)} groups of duplicates ({n_files} files):")
    for g in groups:
        print(f"\n{g.tier.replace('_', '-')} ({len(g.files)} files):")
        for f in g.files:
            print(f"  {f.path}  ({_dims(f.width, f.height)}, {_fmt_size(f.size)})")
    return 0


# --------------------------------------------------------------------------- parser


def _common() -> argparse.ArgumentParser:
    """``--library`` / ``--model``, accepted before or after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--library", metavar="DIR", default=argparse.SUPPRESS,
                   help=f"library folder (default: ${LIBRARY_ENV}, else the per-user data "
                        "folder)")
    p.add_argument("--model", metavar="PATH", default=argparse.SUPPRESS,
                   help=f"model file (default: ${MODEL_ENV}, else {DEFAULT_MODEL} of the "
                        "installation)")
    return p


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn :class:`CliError` and bad-input errors into a message and exit status 2."""

    def run(a: argparse.Namespace) -> int:
        for name in ("library", "model"):
            if not hasattr(a, name):
                setattr(a, name, None)
        try:
            return func(a)
        except CliError as exc:
            print(f"cukd {_command_name(a)}: error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            from core.errors import user_message

            msg = user_message(exc)
            if msg is None:
                raise
            print(f"cukd {_command_name(a)}: error: {msg}", file=sys.stderr)
            return 2

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def _command_name(a: argparse.Namespace) -> str:
    sub = getattr(a, "library_command", None)
    cmd = getattr(a, "command", None)
    return f"library {sub}" if cmd == "library" and sub else str(cmd)


def add_commands(subparsers: Any) -> None:
    """Register ``library``, ``search`` and ``duplicates`` on ``cukd``'s subparsers.

    Each leaf sets ``func`` (``func(args) -> exit status``) like the other ``cukd`` commands.
    """
    common = _common()
    lib = subparsers.add_parser("library", parents=[common],
                                help="photo library: add/remove folders, scan, status, watch")
    lsub = lib.add_subparsers(dest="library_command", required=True)

    p = lsub.add_parser("add", parents=[common], help="add a folder to the library")
    p.add_argument("path", help="folder of photos")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--polling", action="store_true",
                   help="watch by polling (network drives, where change events do not arrive)")
    g.add_argument("--no-watch", action="store_true", help="do not watch this folder")
    p.add_argument("--exclude", action="append", metavar="GLOB",
                   help="skip files/folders matching GLOB (name or path relative to the "
                        "folder, e.g. '*.tmp' or 'Private/*'); repeatable")
    p.set_defaults(func=_guarded(_cmd_add))

    p = lsub.add_parser("remove", parents=[common],
                        help="forget a folder and its files (nothing on disk is touched)")
    p.add_argument("path", help="library folder (or its id)")
    p.set_defaults(func=_guarded(_cmd_remove))

    p = lsub.add_parser("scan", parents=[common],
                        help="index new and changed photos, forget deleted ones")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-errors", type=int, default=50, metavar="N",
                   help="list at most N failed files (default 50)")
    p.set_defaults(func=_guarded(_cmd_scan))

    p = lsub.add_parser("status", parents=[common], help="folders, counts and model")
    p.add_argument("--errors", action="store_true", help="list the files that failed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(_cmd_status))

    p = lsub.add_parser("repair", parents=[common],
                        help="check the catalog, recover what a damaged one still holds and "
                             "rebuild the indexes (photo folders are never touched)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(_cmd_repair))

    p = lsub.add_parser("watch", parents=[common],
                        help="scan, then index changes as they happen until Ctrl+C")
    p.add_argument("--no-scan", action="store_true", help="skip the initial scan")
    p.add_argument("--max-errors", type=int, default=20, metavar="N")
    p.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_guarded(_cmd_watch))

    s = subparsers.add_parser("search", parents=[common],
                              help="find photos similar to an image")
    s.add_argument("image", help="query image file")
    s.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    s.add_argument("--radius", type=int, default=None, metavar="R",
                   help="all photos within R code bits (at most -k of them)")
    s.add_argument("--robust", action="store_true",
                   help="also match rotated and mirrored copies (8x the query work)")
    s.add_argument("--json", action="store_true", help="print results as JSON")
    s.set_defaults(func=_guarded(_cmd_search))

    d = subparsers.add_parser("duplicates", parents=[common],
                              help="groups of identical and near-duplicate photos")
    d.add_argument("--json", action="store_true")
    d.add_argument("--level", choices=DUPLICATE_LEVELS, default="normal",
                   help="how alike photos must be: strict = the same picture resized, "
                        "recompressed, recoloured or mirrored; normal = also crops and "
                        "other edits (default); loose = also look-alikes such as other "
                        "shots of the same scene")
    d.set_defaults(func=_guarded(_cmd_duplicates))


def build_parser() -> argparse.ArgumentParser:
    """A parser with only these commands (``python -m core.cli_library``, tests)."""
    p = argparse.ArgumentParser(prog="cukd", description="CUKD photo library commands.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    add_commands(p.add_subparsers(dest="command", required=True))
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(a.func(a))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
