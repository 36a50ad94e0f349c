"""Never pay for the same LLM call twice: the response cache, shared by every run.

One key (a hash of the serving's settings and the whole request) for the cache and the
per-step :class:`rare.llm.journal.Journal`. The cache is an SQLite-backed ``diskcache``
(safe with many threads and processes) under ``$RARE_CACHE_DIR``, else
``$XDG_CACHE_HOME/rare-synth``, else ``~/.cache/rare-synth``. ``RARE_NO_CACHE=1`` or
``rare run --no-cache`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from rare.llm.types import ChatRequest, Completion

log = logging.getLogger(__name__)

CACHE_ENV = "RARE_CACHE_DIR"
NO_CACHE_ENV = "RARE_NO_CACHE"


def request_key(settings: dict[str, Any], request: ChatRequest) -> str:
    """A stable hash of everything that decides the reply."""
    payload = json.dumps({"settings": settings, "request": request.to_record()},
                         sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


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
            return Completion.from_record(data) if data is not None else None
        except Exception as exc:  # noqa: BLE001 - see _warn
            self._warn("reading", exc)
            return None

    def put(self, key: str, completion: Completion) -> None:
        try:
            self._cache.set(key, completion.to_record())
        except Exception as exc:  # noqa: BLE001 - see _warn
            self._warn("writing", exc)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> int:
        return int(self._cache.clear())

    def close(self) -> None:
        self._cache.close()
