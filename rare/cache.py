"""Never pay for the same LLM call twice.

Two stores, one key (a hash of the serving's settings and the whole request):

* :class:`ResponseCache`, on by default and shared by every run: an SQLite-backed
  ``diskcache`` (safe with many threads and processes) under ``$RARE_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/rare-synth``, else ``~/.cache/rare-synth``. ``RARE_NO_CACHE=1`` or
  ``rare run --no-cache`` turns it off.
* :class:`Journal`, one per LLM step, beside the step's output file: an append-only JSONL
  file with one line per finished request, flushed at once and fsync'd in batches. A run
  killed at any moment (SIGKILL included) replays it when run again, so finished rows are
  never sent again, cache or no cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rare.llm import ChatRequest, Completion

log = logging.getLogger(__name__)

CACHE_ENV = "RARE_CACHE_DIR"
NO_CACHE_ENV = "RARE_NO_CACHE"


def request_key(settings: dict[str, Any], request: ChatRequest) -> str:
    """A stable hash of everything that decides the reply."""
    payload = json.dumps({"settings": settings, "request": asdict(request)}, sort_keys=True,
                         ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _to_dict(completion: Completion) -> dict[str, Any]:
    data = asdict(completion)
    data.pop("cached", None)
    return data


def _from_dict(data: dict[str, Any]) -> Completion:
    fields = {k: v for k, v in data.items() if k in Completion.__dataclass_fields__}
    return Completion(**{**fields, "cached": True})


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rare-synth"


def cache_disabled_by_env() -> bool:
    return os.environ.get(NO_CACHE_ENV, "").lower() not in ("", "0", "false", "no")


class ResponseCache:
    """Replies by request key, on disk, shared across threads and processes."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        import diskcache

        self.directory = Path(directory) if directory else default_cache_dir() / "responses"
        # eviction off: a reply is worth more than the disk it takes ("cache clear" empties it)
        self._cache = diskcache.Cache(str(self.directory), size_limit=2**40,
                                      eviction_policy="none")
        self._warned = False

    def _warn(self, what: str, exc: Exception) -> None:
        # The cache only saves money: a broken one must not stop a run (the journal still
        # keeps every finished reply), so say it once and carry on.
        if not self._warned:
            self._warned = True
            log.warning("response cache %s: %s failed (%s); going on without it",
                        self.directory, what, exc)

    def get(self, key: str) -> Completion | None:
        try:
            data = self._cache.get(key)
            return _from_dict(data) if data is not None else None
        except Exception as exc:  # noqa: BLE001 - see _warn
            self._warn("reading", exc)
            return None

    def put(self, key: str, completion: Completion) -> None:
        try:
            self._cache.set(key, _to_dict(completion))
        except Exception as exc:  # noqa: BLE001 - see _warn
            self._warn("writing", exc)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> int:
        return self._cache.clear()

    def close(self) -> None:
        self._cache.close()


class Journal:
    """Finished requests of one step, appended as they complete.

    Each line is ``{"key": ..., "completion": {...}}``. A torn last line (the process died
    mid-write) is ignored on reading. Lines are written and flushed at once, so a killed
    process loses nothing it finished; ``fsync`` runs every ``sync_every`` lines or
    ``sync_seconds`` so that a power cut loses at most that much.
    """

    def __init__(self, path: str | os.PathLike[str], sync_every: int = 16,
                 sync_seconds: float = 2.0) -> None:
        self.path = Path(path)
        self.sync_every = sync_every
        self.sync_seconds = sync_seconds
        self.entries: dict[str, Completion] = {}
        self._lock = threading.Lock()
        self._unsynced = 0
        self._last_sync = time.monotonic()
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
                    self.entries[item["key"]] = _from_dict(item["completion"])
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
        line = json.dumps({"key": key, "completion": _to_dict(completion)}, ensure_ascii=False)
        with self._lock:
            self.entries[key] = completion
            if self._fh.closed:
                # a call that was in flight when the step stopped (Ctrl-C, fail-fast) came
                # back after close(): it is paid for, so keep it for the next run
                self._fh = self.path.open("a", encoding="utf-8")
                self._fh.write(line + "\n")
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                return
            self._fh.write(line + "\n")
            self._fh.flush()
            self._unsynced += 1
            now = time.monotonic()
            if self._unsynced >= self.sync_every or now - self._last_sync >= self.sync_seconds:
                os.fsync(self._fh.fileno())
                self._unsynced = 0
                self._last_sync = now

    def __len__(self) -> int:
        return len(self.entries)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
