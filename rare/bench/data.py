"""What a benchmark runs on: a JSONL corpus, queries (TSV or TREC topics) and TREC qrels.

:class:`DataSpec` says where the data is (JSON-serializable, so a worker process loads the
same data); :func:`load_dataset` reads it into a :class:`Dataset`, with every error naming
the file, the line and the field.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rare.errors import InputError, StorageError
from rare.evaluation import read_qrels, read_topics

ID_FIELDS = ("_id", "id", "docid")
TEXT_FIELDS = ("text", "contents")


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
    """Query text by id, from a ``qid<TAB>query`` TSV file, BEIR's ``queries.jsonl`` or a TREC
    topics file."""
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
    if first.lstrip().startswith("{"):  # BEIR's queries.jsonl: {"_id": ..., "text": ...}
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                qid, query = str(row.get("_id", row.get("id"))), row["text"]
            except (ValueError, KeyError, AttributeError):
                raise InputError(f"{path}: line {lineno}: expected a JSON object with '_id' "
                                 f"and 'text', got {line[:60]!r}") from None
            if qid in queries:
                raise InputError(f"{path}: line {lineno}: duplicate query id {qid!r}")
            queries[qid] = str(query).strip()
    elif "\t" in first:
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
        raise InputError(f"{path}: neither 'qid<TAB>query' lines, BEIR queries.jsonl nor "
                         "TREC topics (<top> or <DOC> blocks)")
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
    language: str = "en"
    negatives: bool = True  # time the mining options, measure false negatives
