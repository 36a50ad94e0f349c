"""What runs on the Ray workers: blocks of rows through one step's operator.

A worker rebuilds what it needs from a :class:`StageSpec` (plain data, pickled to it): its
own serving from the pipeline's serving name and options, its own operator from the step's
name and settings, the step's storage for the block journals. It never sees the driver's
objects. A block travels as a compressed pickle (``encode``/``decode``), so rows keep their
exact values and types (None, nested lists, ints that look like floats) on the way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import socket
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rare.storage import FileStorage

log = logging.getLogger("rare.ray")

#: the marker file the driver leaves in a folder, so that a worker can tell that it sees
#: the driver's folder (a shared filesystem) and not a same-named local one
MARKER = ".rare-ray-{token}"


def encode(obj: Any) -> bytes:
    """A compressed pickle of ``obj``."""
    return zlib.compress(pickle.dumps(obj, protocol=5), 1)


def decode(data: bytes) -> Any:
    """What :func:`encode` packed."""
    return pickle.loads(zlib.decompress(data))


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """A fingerprint of a block's rows: a finished block is reused only for the same rows."""
    payload = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=12).hexdigest()


def node_name() -> str:
    """This worker's node, for messages."""
    try:
        import ray.util

        return str(ray.util.get_node_ip_address())
    except Exception:  # noqa: BLE001 - a name for a message only
        return socket.gethostname()


@dataclass
class StageSpec:
    """Everything a worker needs to transform blocks of one step, as plain data."""

    step: int  # the step the operator writes (it reads step - 1)
    operator: str
    init: dict[str, Any]
    run: dict[str, Any]
    storage: FileStorage
    token: str
    #: the operator's constructor takes ``llm_serving``: the worker builds a serving for it
    takes_serving: bool = False
    #: its transform() calls the serving: it runs on an actor pool, with journals
    uses_llm: bool = False
    serving_name: str | None = None
    serving_options: dict[str, Any] = field(default_factory=dict)
    retriever: str | None = None
    retriever_options: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    #: the response cache's folder as the driver sees it; None: no response cache
    response_cache: str | None = None
    #: endpoints spread over the actors (each actor's serving gets one as ``api_url``)
    api_urls: list[str] = field(default_factory=list)

    @property
    def blocks_path(self) -> Path:
        return self.storage.blocks_path(self.step)

    def visible(self, folder: str | Path) -> bool:
        """Whether this process sees the driver's ``folder`` (its marker file is there)."""
        return (Path(folder) / MARKER.format(token=self.token)).exists()


class IndexCounter:
    """Hands out 0, 1, 2, ...: each actor's index, to spread the actors over the endpoints."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        value = self.count
        self.count += 1
        return value


class BlockWorker:
    """Transforms blocks of one step: a Ray Data actor (LLM stages) or one task's worker.

    The serving and the operator are built once; each block gets its own
    :class:`rare.StepContext` (its start row, its journal), ``open``, ``transform`` and
    ``close``, so its stats are its own.
    """

    def __init__(self, spec: StageSpec, counter: Any = None) -> None:
        from rare.pipeline import Pipeline, Step

        self.spec = spec
        self.node = node_name()
        self.index = 0
        if counter is not None:
            import ray

            self.index = int(ray.get(counter.next.remote()))
        self.serving: Any = self._serving() if spec.takes_serving else None
        step = Step(spec.operator, dict(spec.init), dict(spec.run))
        pipeline = Pipeline([step], serving=self.serving, retriever=spec.retriever,
                            retriever_options=spec.retriever_options, language=spec.language)
        self.op: Any = pipeline.build(pipeline.classes[0], step)
        self.op.configure(**step.run)
        self.journals = spec.visible(spec.blocks_path)
        if not self.journals and spec.uses_llm:
            log.warning("%s: the cache folder %s is not visible from this node: blocks run "
                        "here keep no journal, so a block cut short is asked again in full. "
                        "Put --cache-dir on a filesystem every node shares.", self.node,
                        spec.blocks_path.parent)

    def _serving(self) -> Any:
        import rare.serving

        spec = self.spec
        options = dict(spec.serving_options)
        if spec.api_urls:
            options["api_url"] = spec.api_urls[self.index % len(spec.api_urls)]
        serving = rare.serving.create(spec.serving_name, **options)
        cache = spec.response_cache
        if cache is not None and not spec.visible(cache):
            log.warning("%s: the response cache %s is not visible from this node: this "
                        "worker runs without it (the block journals still keep every "
                        "reply). Give --response-cache a folder every node shares, or "
                        "--no-cache.", self.node, cache)
            cache = None
        serving.use_cache(cache if cache is not None else False)
        if spec.api_urls:
            # The endpoints are replicas of one model: a reply is keyed (journal, response
            # cache) by the pipeline's api_url whichever replica gave it, so that a block
            # that runs again on another actor, or a rerun, finds the replies it had.
            canonical = spec.serving_options.get("api_url") or spec.api_urls[0]
            own_settings = serving.settings

            def replica_settings() -> dict[str, Any]:
                settings = dict(own_settings())
                if "api_url" in settings:
                    settings["api_url"] = canonical
                return settings

            serving.settings = replica_settings  # type: ignore[method-assign]
        # A worker's per-batch progress bar would only clutter the driver's log: the driver
        # draws one bar per stage.
        generate = serving.generate

        def quiet_generate(requests: Any, desc: str | None = None, journal: Any = None) -> Any:
            return generate(requests, desc=None, journal=journal)

        serving.generate = quiet_generate  # type: ignore[method-assign]
        return serving

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        blocks = [int(b) for b in batch["block"]]
        results = [self.transform(block, int(start), decode(bytes(payload)))
                   for block, start, payload in zip(blocks, batch["start"], batch["payload"])]
        out = np.empty(len(results), dtype=object)
        out[:] = results
        return {"block": np.array(blocks, dtype=np.int64), "result": out}

    def transform(self, block: int, start: int, rows: list[dict[str, Any]]) -> bytes:
        """One block through the operator: its rows, stats and LLM usage, encoded."""
        from rare.step import StepContext

        spec = self.spec
        storage = spec.storage
        opener = (lambda: storage.block_journal(spec.step, block)) if self.journals else None
        ctx = StepContext(source=storage.location(spec.step - 1), start=start, opener=opener)
        serving = self.serving
        usage0 = Counter(serving.usage) if serving is not None else Counter()
        failures0 = Counter(serving.failures) if serving is not None else Counter()
        self.op.open(ctx)
        try:
            out = self.op.transform(rows, ctx)
        finally:
            try:
                ctx.close()
            finally:
                self.op.close()
        usage: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        if serving is not None:
            usage = Counter(serving.usage) - usage0
            failures = Counter(serving.failures) - failures0
        return encode({"rows": out, "stats": dict(self.op.stats), "usage": dict(usage),
                       "failures": dict(failures), "node": self.node, "pid": os.getpid(),
                       "endpoint": (self.spec.api_urls[self.index % len(self.spec.api_urls)]
                                    if self.spec.api_urls else None)})

    def close(self) -> None:
        if self.serving is not None:
            self.serving.close()
            self.serving = None


def transform_blocks(batch: dict[str, Any], spec: StageSpec) -> dict[str, Any]:
    """A Ray Data task: blocks through an operator that calls no LLM (BM25 mining)."""
    worker = BlockWorker(spec)
    try:
        return worker(batch)
    finally:
        worker.close()
