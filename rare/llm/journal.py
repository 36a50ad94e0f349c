"""The journal of one LLM step: finished replies, appended as they complete.

One per step, beside the step's output file: an append-only JSONL file with one line per
finished request, written and flushed before the call's slot takes another request, and
fsync'd in batches by a thread of its own (an fsync takes milliseconds; the event loop
that writes the lines must not wait for it). A run killed at any moment (SIGKILL
included) replays it when run again, so a finished request is never sent again, cache or
no cache; a power cut loses at most the lines not yet fsync'd.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from rare.llm.types import Completion

log = logging.getLogger(__name__)


class Journal:
    """Finished requests of one step, appended as they complete.

    Each line is ``{"key": ..., "completion": {...}}``. A torn last line (the process died
    mid-write) is ignored on reading. Lines are written and flushed at once, so a killed
    process loses nothing it finished; ``fsync`` runs, in the background, once
    ``sync_every`` lines or ``sync_seconds`` have gone unsynced, and at ``close()``.
    """

    def __init__(self, path: str | os.PathLike[str], sync_every: int = 16,
                 sync_seconds: float = 2.0) -> None:
        self.path = Path(path)
        self.sync_every = sync_every
        self.sync_seconds = sync_seconds
        self.entries: dict[str, Completion] = {}
        self._lock = threading.Lock()
        self._unsynced = 0
        self._first_unsynced = 0.0  # when the oldest unsynced line was written
        self._wake = threading.Condition(self._lock)
        self._syncer: threading.Thread | None = None
        self._closing = False
        self.replayed = 0
        if self.path.exists():
            self._load()
            if self.entries:
                log.info("%s: resuming with %d finished replies", self.path, len(self.entries))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        if self.path.stat().st_size and not self._ends_with_newline():
            self._fh.write("\n")  # close a line torn by a crash so the next one is whole
            self._fh.flush()

    def _load(self) -> None:
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                    self.entries[item["key"]] = Completion.from_record(item["completion"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def get(self, key: str) -> Completion | None:
        hit = self.entries.get(key)
        if hit is not None:
            with self._lock:
                self.replayed += 1
        return hit

    def put(self, key: str, completion: Completion) -> None:
        line = json.dumps({"key": key, "completion": completion.to_record()},
                          ensure_ascii=False)
        with self._lock:
            self.entries[key] = completion
            if self._fh.closed:
                # a call that was in flight when the step stopped (Ctrl-C, fail-fast) came
                # back after close(): it is paid for, so keep it for the next run
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                return
            self._fh.write(line + "\n")
            self._fh.flush()
            self._unsynced += 1
            if self._unsynced == 1:
                self._first_unsynced = time.monotonic()
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                                name=f"journal-sync {self.path.name}")
                self._syncer.start()
            elif self._unsynced == 1 or self._unsynced >= self.sync_every:
                self._wake.notify()  # a new deadline, or a full batch

    def _sync_loop(self) -> None:
        """fsync once ``sync_every`` lines or ``sync_seconds`` are unsynced; end at close."""
        while True:
            with self._lock:
                while not self._closing and self._unsynced < self.sync_every:
                    left = (self._first_unsynced + self.sync_seconds - time.monotonic()
                            if self._unsynced else None)
                    if left is not None and left <= 0:
                        break
                    self._wake.wait(left)
                if self._closing:
                    return
                self._unsynced = 0
                fd = self._fh.fileno()
            os.fsync(fd)  # outside the lock: writers go on meanwhile; close() waits for it

    def __len__(self) -> int:
        return len(self.entries)

    def close(self) -> None:
        with self._lock:
            if self._fh.closed:
                return
            self._closing = True
            self._wake.notify_all()
            syncer = self._syncer
        if syncer is not None:
            syncer.join()  # its fsync in progress ends before the file closes
        with self._lock:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._unsynced = 0

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
