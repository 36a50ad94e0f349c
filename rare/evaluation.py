"""IR evaluation: TREC topics and qrels, nDCG@k, recall@k, MRR, top-k overlap.

Conventions follow trec_eval: a run is ``{qid: [doc_id, ...]}`` best first (the order given
is the ranking; no re-sorting by score), qrels are ``{qid: {doc_id: relevance}}``, and a mean
is taken over the queries that have qrels; one missing from the run counts as 0 (trec_eval -c).
nDCG uses gain = relevance and discount log2(rank + 1), as trec_eval's ``ndcg_cut``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Run = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]

_BLOCK = re.compile(r"<(top|DOC)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_DOCNO = re.compile(r"<DOCNO>\s*(.*?)\s*</DOCNO>", re.DOTALL | re.IGNORECASE)
_NUM = re.compile(r"<num>\s*(?:Number:)?\s*(\S+)", re.IGNORECASE)
_TITLE = re.compile(r"<title>\s*(?:Topic:)?(.*?)(?=<[a-z]+>|$)", re.DOTALL | re.IGNORECASE)


def read_topics(path: str | Path) -> dict[str, str]:
    """Query text by topic id from a TREC SGML topics file.

    Reads both layouts: ``<top><num> Number: 301 <title> ...`` (the title is the query) and
    CACM's ``<DOC><DOCNO> 1 </DOCNO> text </DOC>`` (everything after DOCNO is the query,
    as Anserini's CacmTopicReader reads it). Whitespace is collapsed.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    topics: dict[str, str] = {}
    for tag, body in _BLOCK.findall(text):
        if tag.lower() == "doc":
            docno = _DOCNO.search(body)
            if docno is None:
                raise ValueError(f"{path}: a <DOC> topic without <DOCNO>: {body[:80]!r}")
            qid, query = docno.group(1), body[docno.end():]
        else:
            num, title = _NUM.search(body), _TITLE.search(body)
            if num is None or title is None:
                raise ValueError(f"{path}: a <top> topic without <num> or <title>: {body[:80]!r}")
            qid, query = num.group(1), title.group(1)
        topics[qid] = " ".join(query.split())
    if not topics:
        raise ValueError(f"{path}: no <top> or <DOC> topics found")
    return topics


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Qrels as ``{qid: {doc_id: rel}}``: TREC's ``qid iteration doc_id relevance`` lines,
    or BEIR's ``query-id corpus-id score`` TSV (its header line is skipped)."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3:
                if lineno == 1 and not parts[2].lstrip("-").isdigit():
                    continue  # BEIR's header
                qid, doc_id, rel = parts
            elif len(parts) == 4:
                qid, _, doc_id, rel = parts
            else:
                raise ValueError(f"{path}:{lineno}: expected 4 columns (TREC) or 3 (BEIR), "
                                 f"got {line!r}")
            try:
                qrels.setdefault(qid, {})[doc_id] = int(rel)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: relevance {rel!r} is not an integer") \
                    from None
    return qrels


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k of one ranking against one query's judgements (0 when nothing is relevant)."""
    dcg = sum(max(judged.get(doc, 0), 0) / math.log2(rank + 2)
              for rank, doc in enumerate(ranked[:k]))
    ideal_gains = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[:k]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal_gains))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k (0 when nothing is relevant)."""
    relevant = {doc for doc, rel in judged.items() if rel > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], judged: Mapping[str, int],
                    k: int | None = None) -> float:
    """1 / rank of the first relevant document within the top k (all when k is None)."""
    for rank, doc in enumerate(ranked[:k] if k else ranked):
        if judged.get(doc, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


def mean_metric(run: Run, qrels: Qrels,
                metric: Callable[[Sequence[str], Mapping[str, int]], float]) -> float:
    """Mean of ``metric(ranking, judgements)`` over the queries that have qrels."""
    if not qrels:
        raise ValueError("no qrels")
    return sum(metric(run.get(qid, []), judged) for qid, judged in qrels.items()) / len(qrels)


def ndcg(run: Run, qrels: Qrels, k: int = 10) -> float:
    return mean_metric(run, qrels, lambda ranked, judged: ndcg_at_k(ranked, judged, k))


def recall(run: Run, qrels: Qrels, k: int) -> float:
    return mean_metric(run, qrels, lambda ranked, judged: recall_at_k(ranked, judged, k))


def mrr(run: Run, qrels: Qrels, k: int | None = None) -> float:
    return mean_metric(run, qrels, lambda ranked, judged: reciprocal_rank(ranked, judged, k))


def overlap_at_k(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], k: int = 10) -> float:
    """Mean share of the top-k ids two runs (lists of rankings, query by query) have in common."""
    if len(a) != len(b):
        raise ValueError(f"runs of different lengths: {len(a)} and {len(b)}")
    if not a:
        return 1.0
    total = 0.0
    for x, y in zip(a, b):
        top_x, top_y = set(x[:k]), set(y[:k])
        total += len(top_x & top_y) / max(len(top_x), len(top_y), 1)
    return total / len(a)
