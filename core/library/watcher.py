"""Watch library folders and turn file-system events into debounced scanner batches.

One watchdog observer per root (native inotify/FSEvents/ReadDirectoryChangesW, or a
``PollingObserver`` for network mounts or when the root asks for ``"polling"``). Events only
record touched paths; a flusher thread hands them over as one batch once the folder has been
quiet for ``debounce_s`` (or ``max_delay_s`` after the first event, or at ``max_batch``
paths). A health check notices roots that disappear (unmounted drive) or come back, stops or
restarts their observer and reports the change; files of a missing root are never deleted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .catalog import RootInfo

__all__ = ["LibraryWatcher", "WatchConfig"]

logger = logging.getLogger(__name__)

_IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})


@dataclass(frozen=True)
class WatchConfig:
    """Watcher settings.

    Attributes:
        debounce_s: quiet time after the last event before a batch is flushed.
        max_delay_s: flush at the latest this long after the first pending event.
        max_batch: flush as soon as this many paths are pending.
        poll_interval_s: scan interval of polling observers.
        health_interval_s: how often roots are checked for being online.
        force_polling: use polling observers for every root.
    """

    debounce_s: float = 1.0
    max_delay_s: float = 10.0
    max_batch: int = 5000
    poll_interval_s: float = 5.0
    health_interval_s: float = 5.0
    force_polling: bool = False


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: Callable[[list[str]], None]) -> None:
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED_EVENTS:
            return
        paths = [os.fsdecode(event.src_path)]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(os.fsdecode(dest))
        self._sink(paths)


class LibraryWatcher:
    """Observers for a set of roots plus a debouncing flusher and a health check.

    Args:
        roots: returns the roots to watch (those with ``watch_mode == "off"`` are skipped).
        on_paths: receives each batch of touched paths (files or folders, maybe deleted);
            called on the flusher thread, one batch at a time.
        on_root_state: ``(root, online)`` when a root disappears or comes back.
        config: timings.
    """

    def __init__(
        self,
        roots: Callable[[], list[RootInfo]],
        on_paths: Callable[[list[str]], None],
        on_root_state: Callable[[RootInfo, bool], None] | None = None,
        config: WatchConfig = WatchConfig(),
    ) -> None:
        self._roots = roots
        self._on_paths = on_paths
        self._on_root_state = on_root_state
        self.config = config
        self._cond = threading.Condition()
        self._pending: dict[str, None] = {}
        self._first = 0.0
        self._last = 0.0
        self._observers: dict[int, tuple[str, BaseObserver]] = {}
        self._online: dict[int, bool] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start observers for all watched roots and the flusher thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="cukd-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop observers and the flusher (pending events are dropped)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for root_id in list(self._observers):
            self._stop_observer(root_id)

    @property
    def running(self) -> bool:
        """Whether the watcher is started."""
        return self._thread is not None

    def idle(self) -> bool:
        """True when no events are pending and no batch is being processed."""
        with self._cond:
            return not self._pending and not self._busy

    def refresh(self) -> None:
        """Start/stop observers so they match the current roots and their online state."""
        roots = {r.id: r for r in self._roots() if r.watch_mode != "off"}
        for root_id in list(self._observers):
            path, _ = self._observers[root_id]
            if root_id not in roots or roots[root_id].path != path:
                self._stop_observer(root_id)
        for r in roots.values():
            online = os.path.isdir(r.path)
            self._online.setdefault(r.id, online)
            if online and r.id not in self._observers:
                self._start_observer(r)

    # ----------------------------------------------------------------- observers
    def _start_observer(self, root: RootInfo) -> None:
        polling = self.config.force_polling or root.watch_mode == "polling"
        obs: BaseObserver = (PollingObserver(timeout=self.config.poll_interval_s) if polling
                             else Observer())
        try:
            obs.schedule(_Handler(self._add), root.path, recursive=True)
            obs.daemon = True
            obs.start()
        except OSError as exc:
            logger.warning("cannot watch %s: %s", root.path, exc)
            return
        self._observers[root.id] = (root.path, obs)
        logger.info("watching %s (%s)", root.path, "polling" if polling else "native")

    def _stop_observer(self, root_id: int) -> None:
        entry = self._observers.pop(root_id, None)
        if entry is None:
            return
        obs = entry[1]
        try:
            obs.stop()
            obs.join(timeout=10)
        except Exception:  # an observer whose folder vanished may fail to stop cleanly
            logger.debug("observer for %s did not stop cleanly", entry[0], exc_info=True)

    # ----------------------------------------------------------------- events
    def _add(self, paths: list[str]) -> None:
        now = time.monotonic()
        with self._cond:
            if not self._pending:
                self._first = now
            for p in paths:
                self._pending[p] = None
            self._last = now
            if len(self._pending) >= self.config.max_batch:
                self._cond.notify_all()

    def _due(self, now: float) -> bool:
        cfg = self.config
        return bool(self._pending) and (
            now - self._last >= cfg.debounce_s or now - self._first >= cfg.max_delay_s
            or len(self._pending) >= cfg.max_batch)

    def _loop(self) -> None:
        next_health = time.monotonic() + self.config.health_interval_s
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait(timeout=min(0.2, self.config.debounce_s))
                now = time.monotonic()
                batch: list[str] = []
                if self._due(now):
                    batch = list(self._pending)
                    self._pending.clear()
                    self._busy = True
            if batch:
                try:
                    self._on_paths(batch)
                except Exception:
                    logger.exception("processing %d changed paths failed", len(batch))
                finally:
                    with self._cond:
                        self._busy = False
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + self.config.health_interval_s
                try:
                    self.check_roots()
                except Exception:
                    logger.exception("root health check failed")

    def check_roots(self) -> None:
        """Detect roots that went offline or came back; restart observers accordingly."""
        for r in self._roots():
            if r.watch_mode == "off":
                continue
            online = os.path.isdir(r.path)
            was = self._online.get(r.id, r.online)
            self._online[r.id] = online
            if online and r.id not in self._observers:
                self._start_observer(r)
            elif not online and r.id in self._observers:
                self._stop_observer(r.id)
            # Report a change, or a catalog state that disagrees with the disk.
            if online == was and online == r.online:
                continue
            if online:
                logger.info("library folder %s is back", r.path)
            else:
                logger.warning("library folder %s disappeared; keeping its files", r.path)
            if self._on_root_state is not None:
                with self._cond:
                    self._busy = True
                try:
                    self._on_root_state(r, online)
                finally:
                    with self._cond:
                        self._busy = False
