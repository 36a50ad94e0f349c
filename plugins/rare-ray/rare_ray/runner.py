"""The Ray runner: a pipeline's steps spread over a Ray cluster, block by block.

For each step the driver (this process) reads the previous step once, in blocks of
``batch_size`` rows, and hands the blocks that are not done yet to Ray Data:

* an LLM stage (its operator takes ``llm_serving``) runs as ``map_batches`` over a pool of
  ``pool_size`` actors, each with ``num_cpus``/``num_gpus`` and its own serving, built from
  the pipeline's serving name and options (``api_urls``: the actors take turns at them);
* an operator that must see every row first (BM25HardNeg) is prepared once on the driver
  into the step's block folder (the index, through :meth:`rare.Operator.share_prepared`),
  then its blocks run as parallel Ray tasks that open what was prepared;
* any other operator's blocks run as Ray tasks.

Each finished block comes back to the driver, which writes it at once to the step's block
folder (``FileStorage.blocks_path``) under its block number and the digest of its input
rows; each block's LLM replies go to the block's own journal there, as they arrive. A run
that was killed resumes: finished blocks are taken from the folder, and a block that was
cut short is run again with its journal, so no finished LLM call is made twice. When every
block is done the step's file is written in block order, the same rows in the same order
as the local runner writes, and the block folders of a finished run are deleted.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shutil
import socket
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rare.errors import MissingDependencyError, RareError, RunnerError, SettingsError
from rare.formats import Records, atomic_write_bytes, format_of
from rare.llm.cache import cache_disabled_by_env, default_cache_dir
from rare.report import RunReport, StageReport
from rare.runner import (
    checked_batches,
    operator_name,
    run_step,
    run_steps,
)
from rare.step import StepContext
from rare.storage import FileStorage, remove_blocks, remove_journals
from rare_ray.worker import (
    MARKER,
    BlockWorker,
    IndexCounter,
    StageSpec,
    decode,
    encode,
    rows_digest,
    transform_blocks,
)

log = logging.getLogger("rare.ray")

#: what installs Ray with Ray Data
PIP_LINE = 'pip install "ray[data]"'
#: rows per block when neither the runner nor the pipeline sets ``batch_size``
DEFAULT_BLOCK_SIZE = 64
#: seconds to wait for a TCP connection to the cluster's address before calling it down
CONNECT_TIMEOUT = 5.0
#: the block size a step's folder was started with (kept so that a rerun's blocks match)
BLOCK_SIZE_FILE = "block_size"


def import_ray() -> Any:
    """The ``ray`` module, with Ray Data; a :class:`MissingDependencyError` with the pip line
    when it is not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ray = importlib.import_module("ray")
            importlib.import_module("ray.data")
    except ImportError as exc:
        raise MissingDependencyError(
            f"the ray runner needs Ray with Ray Data ({exc}); install it with: {PIP_LINE}"
        ) from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail at once, and clearly, when nothing listens at a cluster's ``address``.

    (``ray.init`` itself retries an unreachable address for minutes.) ``auto`` and
    ``local`` are Ray's own words and pass unchecked.
    """
    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    default_port = 10001 if address.startswith("ray://") else 6379
    host, sep, port_text = target.rpartition(":")
    if not sep:
        host, port_text = target, str(default_port)
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise RunnerError(f"Ray address {address!r}: the port {port_text!r} is not a number; "
                          "expected HOST:PORT, e.g. 10.0.0.1:6379") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RunnerError(
            f"cannot reach the Ray cluster at {address!r} ({host}:{port}): {exc}. Start one "
            "with `ray start --head` on the head node and give its address (the "
            "`--address` that `ray start` prints), or leave --ray-address out to start Ray "
            "on this machine."
        ) from None


@dataclass
class _Block:
    index: int
    start: int
    rows: int
    digest: str
    payload: bytes | None  # None once a finished block for these rows is on disk


class RayRunner:
    """Runs a :class:`rare.pipeline.Pipeline` on a Ray cluster (see the module's docstring).

    Settings:

    * ``address``: the cluster (``HOST:PORT`` of its head, ``ray://HOST:10001``, ``auto``);
      default ``$RAY_ADDRESS``, else a Ray instance started on this machine for the run.
    * ``pool_size``: actors of an LLM stage (default: as many as the cluster's CPUs and
      GPUs hold at ``num_cpus``/``num_gpus`` each, at most one per block).
    * ``batch_size``: rows per block, the unit of work and of resuming (default 64).
    * ``num_cpus``, ``num_gpus``: resources of each LLM actor (an actor with an in-process
      engine takes ``num_gpus=1``; one calling an endpoint needs little CPU).
    * ``api_urls``: endpoints for the serving's ``api_url``; actor *i* calls
      ``api_urls[i % len(api_urls)]``.
    * ``task_num_cpus``: CPUs of each task of the other stages (BM25 mining).
    * ``actor_start_timeout``: seconds to wait for an LLM stage's actors to start (a cluster
      that cannot place them fails instead of waiting forever).
    * ``init_options``: more keyword arguments for ``ray.init`` (``runtime_env``,
      ``num_cpus`` of a Ray instance started here, ...).
    * ``keep_blocks``: keep the block folders after a finished run (default: deleted).
    """

    def __init__(self, address: str | None = None, pool_size: int | None = None,
                 batch_size: int | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 api_urls: list[str] | None = None, task_num_cpus: float = 1.0,
                 actor_start_timeout: float = 600.0,
                 init_options: dict[str, Any] | None = None, keep_blocks: bool = False) -> None:
        if importlib.util.find_spec("ray") is None:
            raise MissingDependencyError(f"the ray runner needs Ray with Ray Data; install it "
                                         f"with: {PIP_LINE}")
        if pool_size is not None and pool_size < 1:
            raise SettingsError(f"runner 'ray': pool_size must be >= 1, got {pool_size}")
        if batch_size is not None and batch_size < 1:
            raise SettingsError(f"runner 'ray': batch_size must be >= 1, got {batch_size}")
        for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                            ("task_num_cpus", task_num_cpus)):
            if value < 0:
                raise SettingsError(f"runner 'ray': {name} must be >= 0, got {value}")
        if actor_start_timeout <= 0:
            raise SettingsError("runner 'ray': actor_start_timeout must be > 0, got "
                                f"{actor_start_timeout}")
        urls = list(api_urls or [])
        if any(not isinstance(u, str) or not u.strip() for u in urls):
            raise SettingsError(f"runner 'ray': api_urls must be URLs, got {api_urls!r}")
        self.address = address
        self.pool_size = pool_size
        self.batch_size = batch_size or DEFAULT_BLOCK_SIZE
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.api_urls = urls
        self.task_num_cpus = float(task_num_cpus)
        self.actor_start_timeout = actor_start_timeout
        self.init_options = dict(init_options or {})
        self.keep_blocks = keep_blocks

    # -- the cluster -----------------------------------------------------------------------
    def _connect(self, ray: Any) -> bool:
        """Connect to (or start) Ray unless this process already is; True if we did."""
        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        options = dict(self.init_options)
        options.setdefault("logging_level", logging.WARNING)
        if address:
            check_reachable(address)
        else:
            options.setdefault("include_dashboard", False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {address!r}" if address else "on this machine"
            raise RunnerError(f"could not start or join the Ray cluster {where}: {exc}") from exc
        return True

    @contextlib.contextmanager
    def _data_context(self, ray: Any) -> Iterator[None]:
        """Ray Data set up for this run: our progress bars, not its own; a UDF's own error
        raised as it is; no endless wait for actors the cluster cannot place."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ray.data.DataContext.get_current()
        changes = {"enable_progress_bars": False, "print_on_execution_start": False,
                   "raise_original_map_exception": True,
                   "wait_for_min_actors_s": int(self.actor_start_timeout)}
        saved = {name: getattr(ctx, name) for name in changes if hasattr(ctx, name)}
        for name, value in changes.items():
            if name in saved:
                setattr(ctx, name, value)
        quiet = logging.getLogger("ray.data")  # a failed block is ours to report
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            quiet.setLevel(level)
            for name, value in saved.items():
                setattr(ctx, name, value)

    def _pool_size(self, ray: Any, blocks: int) -> int:
        if self.pool_size is not None:
            return max(1, min(self.pool_size, blocks))
        resources = ray.cluster_resources()
        fits: list[int] = []
        if self.num_cpus > 0:
            fits.append(int(resources.get("CPU", 0) // self.num_cpus))
        if self.num_gpus > 0:
            gpus = resources.get("GPU", 0)
            if not gpus:
                raise RunnerError(f"num_gpus={self.num_gpus:g} per actor, but the Ray cluster "
                                  "has no GPU; set pool_size to wait for GPU nodes that an "
                                  "autoscaler adds, or num_gpus=0")
            fits.append(int(gpus // self.num_gpus))
        size = min(fits) if fits else max(len(self.api_urls), int(resources.get("CPU", 1)))
        return max(1, min(size, blocks))

    # -- the run ---------------------------------------------------------------------------
    def run(self, pipeline: Any, storage: FileStorage, output_path: str | Path,
            on_stage: Callable[[StageReport], None] | None = None) -> RunReport:
        if not isinstance(storage, FileStorage):
            raise RunnerError("the ray runner keeps its blocks in a FileStorage's cache folder; "
                              f"got a {type(storage).__name__}")
        format_of(output_path)  # an unknown output format fails before any work
        if pipeline.needs_llm() and pipeline.serving_name is None:
            raise SettingsError(
                "the ray runner builds a serving in every actor from its registered name and "
                "options: give the pipeline serving='NAME' and serving_options={...} (or "
                "--serving/--api-url), not a serving object")
        if self.api_urls and pipeline.needs_llm():
            import rare.serving
            from rare import plugins
            from rare.settings import known_settings

            cls = plugins.get("servings", pipeline.serving_name or rare.serving.DEFAULT)
            if "api_url" not in known_settings(cls):
                raise SettingsError(f"runner 'ray': api_urls need a serving that takes "
                                    f"api_url; serving {pipeline.serving_name!r} does not")
        ray = import_ray()
        started = self._connect(ray)
        try:
            with self._data_context(ray):
                return self._run(ray, pipeline, storage, Path(output_path), on_stage)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, pipeline: Any, storage: FileStorage, output_path: Path,
             on_stage: Callable[[StageReport], None] | None) -> RunReport:
        started = time.perf_counter()
        token = uuid.uuid4().hex
        usage: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        count = len(pipeline.steps)
        markers: list[Path] = []
        cache_dir = self._response_cache(pipeline, token, markers)

        def transform(n: int, step: Any, op: Any,
                      sinks: list[Callable[[Records], None]]) -> dict[str, Any]:
            return self._run_step(ray, pipeline, storage, n, count, step, op, sinks, token,
                                  cache_dir, markers, usage, failures)

        try:
            done = run_steps(pipeline, storage, output_path, transform, self.batch_size,
                             on_stage)
        finally:
            for marker in markers:
                marker.unlink(missing_ok=True)
        remove_journals(storage, range(1, count + 1))
        if not self.keep_blocks:
            remove_blocks(storage, range(1, count + 1))
        serving = pipeline.serving
        if serving is not None:  # stages that ran here (an operator of the reference's style)
            usage.update(serving.usage)
            failures.update(serving.failures)
        return done.report(storage, output_path, started, usage=dict(usage),
                           failures=dict(failures))

    def _response_cache(self, pipeline: Any, token: str, markers: list[Path]) -> str | None:
        """The response cache folder the actors share (None: off), as the driver sees it."""
        serving = pipeline.serving
        if serving is None or not pipeline.needs_llm():
            return None
        cache = getattr(serving, "response_cache", "default")
        if cache is None:
            return None
        if isinstance(cache, str) and cache == "default":
            if cache_disabled_by_env():
                return None
            folder = default_cache_dir() / "responses"
        else:
            folder = Path(getattr(cache, "directory", ""))
            if not str(folder):
                log.warning("the serving's response cache has no folder the workers could "
                            "open; the ray runner's workers run without one")
                return None
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / MARKER.format(token=token)
        marker.touch()
        markers.append(marker)
        log.info("the workers share the response cache %s", folder)
        return str(folder)

    def _block_size(self, folder: Path, name: str) -> int:
        """The rows per block of a step: what its folder was started with, if anything."""
        path = folder / BLOCK_SIZE_FILE
        try:
            kept = int(path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            kept = 0
        if kept > 0 and kept != self.batch_size:
            if any(folder.glob("block-*")):
                log.warning("%s: resuming with the %d rows per block this step was started "
                            "with (not %d), so that its finished blocks count", name, kept,
                            self.batch_size)
                return kept
        atomic_write_bytes(path, str(self.batch_size).encode("ascii"))
        return self.batch_size

    def _run_step(self, ray: Any, pipeline: Any, storage: FileStorage, n: int, count: int,
                  step: Any, op: Any, sinks: list[Callable[[Records], None]], token: str,
                  cache_dir: str | None, markers: list[Path], usage: Counter[str],
                  failures: Counter[str]) -> dict[str, Any]:
        started = time.perf_counter()
        name = operator_name(op)
        folder = storage.blocks_path(n)
        folder.mkdir(parents=True, exist_ok=True)
        block_size = self._block_size(folder, name)
        init = dict(step.init)
        if op.needs_all_rows:
            prepared = folder / "prepared"
            shutil.rmtree(prepared, ignore_errors=True)
            prepared.mkdir()
            share = getattr(op, "share_prepared", None)
            shared = share(prepared) if share is not None else None
            if shared is None:
                log.warning("%s prepares state its copies on workers cannot open; it runs "
                            "on the driver", name)
                return run_step(op, storage, n, block_size, sinks)
            init.update(shared)
        marker = folder / MARKER.format(token=token)
        marker.touch()
        markers.append(marker)

        # One read of the previous step: blocks, their digests, and prepare() if needed.
        ctx = StepContext(source=storage.location(n - 1))
        blocks: list[_Block] = []
        done: dict[int, dict[str, Any]] = {}

        def reading() -> Iterator[Records]:
            start = 0
            for index, rows in enumerate(checked_batches(op, storage.batches(n - 1, block_size),
                                                         ctx)):
                digest = rows_digest(rows)
                summary = _finished(folder, index, digest)
                if summary is not None:
                    done[index] = summary
                blocks.append(_Block(index, start, len(rows), digest,
                                     None if summary is not None else encode(rows)))
                start += len(rows)
                yield rows

        if op.needs_all_rows:
            op.open(ctx)
            try:
                op.prepare(reading(), ctx)
            finally:
                op.close()
        else:
            for _ in reading():
                pass
        _remove_stale(folder, {_shard_name(b.index, b.digest) for b in blocks})

        todo = [b for b in blocks if b.index not in done]
        total = sum(b.rows for b in blocks)
        bar = tqdm(total=total, initial=sum(blocks[i].rows for i in done), unit="row",
                   desc=f"[{n}/{count}] {name}", dynamic_ncols=True)
        failed = sum(int(s["stats"].get("failed", 0) or 0) for s in done.values())
        bar.set_postfix(failed=failed)
        workers = 0
        try:
            if todo:
                takes_serving = _takes_serving(type(op))
                calls_llm = getattr(op, "calls_llm", None)
                spec = StageSpec(
                    step=n, operator=step.operator, init=init, run=dict(step.run),
                    storage=storage, token=token, takes_serving=takes_serving,
                    uses_llm=bool(calls_llm()) if calls_llm is not None else takes_serving,
                    serving_name=pipeline.serving_name,
                    serving_options=dict(pipeline.serving_options),
                    retriever=pipeline.retriever,
                    retriever_options=dict(pipeline.retriever_options),
                    language=getattr(pipeline, "language", None), response_cache=cache_dir,
                    api_urls=list(self.api_urls))
                for block, result in self._dispatch(ray, spec, todo):
                    if block in done:  # a block Ray ran twice counts once
                        log.debug("%s: block %d came back twice; the first is kept", name, block)
                        continue
                    summary = _keep(folder, blocks[block], result)
                    done[block] = summary
                    usage.update(result["usage"])
                    failures.update(result["failures"])
                    failed += int(summary["stats"].get("failed", 0) or 0)
                    bar.update(blocks[block].rows)
                    bar.set_postfix(failed=failed)
                workers = len({s.get("worker") for s in done.values() if s.get("worker")})
        finally:
            bar.close()
        missing = [b.index for b in blocks if b.index not in done]
        if missing:
            raise RunnerError(f"{name}: Ray returned no result for block(s) "
                              f"{', '.join(map(str, missing[:10]))}; run again to resume")

        # The step's file, in block order; the last step's rows also go to the sinks.
        stats: dict[str, Any] = {}
        rows_out = 0
        with storage.writer(n) as writer:
            for b in blocks:
                rows = decode(_shard_path(folder, b.index, b.digest).read_bytes())["rows"]
                writer.write(rows)
                rows_out += len(rows)
                for sink in sinks:
                    sink(rows)
                _add_stats(stats, done[b.index]["stats"])
        stats.update(rows_in=total, rows_out=rows_out, blocks=len(blocks),
                     blocks_reused=len(blocks) - len(todo),
                     seconds=round(time.perf_counter() - started, 3))
        if workers:
            stats["workers"] = workers
        stats.setdefault("failed", 0)
        op.stats = stats
        return stats

    def _dispatch(self, ray: Any, spec: StageSpec,
                  todo: list[_Block]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Run ``todo`` on the cluster; yield (block, result) as each block finishes."""
        items = [{"block": b.index, "start": b.start, "payload": b.payload} for b in todo]
        options: dict[str, Any] = {"batch_size": 1, "zero_copy_batch": False}
        counter = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = ray.data.from_items(items, override_num_blocks=len(items))
            if spec.uses_llm:
                pool = self._pool_size(ray, len(todo))
                counter = ray.remote(num_cpus=0)(IndexCounter).remote()
                out = dataset.map_batches(
                    BlockWorker, fn_constructor_kwargs={"spec": spec, "counter": counter},
                    compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=self.num_cpus,
                    num_gpus=self.num_gpus or None, **options)
            else:
                out = dataset.map_batches(transform_blocks, fn_kwargs={"spec": spec},
                                          num_cpus=self.task_num_cpus, **options)
        try:
            for row in out.iter_rows():
                yield int(row["block"]), decode(bytes(row["result"]))
        except Exception as exc:  # noqa: BLE001 - a worker's own error, unwrapped
            cause = _rare_cause(exc)
            if cause is not None:
                raise cause from None
            raise RunnerError(f"{spec.operator} (step {spec.step}) failed on the Ray cluster: "
                              f"{type(exc).__name__}: {exc}; finished blocks are kept, so "
                              "running again resumes") from exc
        finally:
            if counter is not None:
                ray.kill(counter)


def _takes_serving(cls: type) -> bool:
    import inspect

    try:
        return "llm_serving" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _shard_name(index: int, digest: str) -> str:
    return f"block-{index:06d}-{digest}.rows"


def _shard_path(folder: Path, index: int, digest: str) -> Path:
    return folder / _shard_name(index, digest)


def _finished(folder: Path, index: int, digest: str) -> dict[str, Any] | None:
    """The summary of a finished block for these rows, if its file is there and whole."""
    path = _shard_path(folder, index, digest)
    try:
        result = decode(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged file: the block runs again
        log.warning("%s: unreadable (%s); the block runs again", path, exc)
        path.unlink(missing_ok=True)
        return None
    return _summary(result)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"stats": dict(result.get("stats", {})), "rows": len(result.get("rows", [])),
            "worker": f"{result.get('node')}:{result.get('pid')}"}


def _keep(folder: Path, block: _Block, result: dict[str, Any]) -> dict[str, Any]:
    """Write a finished block to the step's folder (atomically); return its summary."""
    keep = {key: result[key] for key in ("rows", "stats", "node", "pid") if key in result}
    atomic_write_bytes(_shard_path(folder, block.index, block.digest), encode(keep))
    return _summary(result)


def _remove_stale(folder: Path, wanted: set[str]) -> None:
    """Delete finished blocks made from rows the previous step no longer has."""
    for path in folder.glob("block-*.rows"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)


def _add_stats(total: dict[str, Any], stats: dict[str, Any]) -> None:
    """Numbers add up over the blocks; anything else keeps its last value."""
    for key, value in stats.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total[key] = value


def _rare_cause(exc: BaseException) -> RareError | None:
    """The :class:`RareError` a worker raised, wherever Ray wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # Ray's task error derives from the worker's exception class too, but its message
        # starts with Ray's header: the worker's own exception is its ``cause``.
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException) and id(cause) not in seen:
            current = cause
            continue
        if isinstance(current, RareError):
            return _without_retry_note(current)
        current = current.__cause__ or current.__context__
    return None


def _without_retry_note(exc: RareError) -> RareError:
    """The error without the paragraph Ray Data appends to its message (how to configure
    Ray Data's retries): a failed block is not retried by design, and rerunning resumes."""
    if exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
        cut = text.find("\nFailed to apply UDF transform after ")
        if cut != -1:
            exc.args = (text[:cut], *exc.args[1:])
    return exc
