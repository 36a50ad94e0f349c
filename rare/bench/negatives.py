"""Negative quality: how many mined "negatives" are in fact relevant (false negatives).

On a collection whose queries have several relevant documents, each query with at least
``min_relevant`` of them is mined once per relevant document, that document being the
positive (the others stay in the index, as unlabelled positives do in real data). A mined
negative that the qrels call relevant is a false negative. :func:`measure_negatives` mines
every pair under each :class:`Variant` (plain top-k, a rank window, a margin, random
sampling, and optionally the LLM judge) and reports the false-negative rate, the share of
pairs that still got ``num_neg`` negatives, the skipped candidates and the mining time.

Used by ``rare bench`` (the ``negatives`` section of its report, when the qrels allow it)
and by ``benchmarks/false_negatives.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rare.errors import InputError, StorageError
from rare.retriever import Retriever


@dataclass(frozen=True)
class Variant:
    """One way of mining, as ``Retriever.mine``'s settings (plus the judge)."""

    name: str
    start_rank: int = 0
    end_rank: int | None = None
    sampling: str = "top"
    seed: int = 0
    max_score_ratio: float | None = None
    min_score_gap: float | None = None
    judge: bool = False

    def mine_settings(self) -> dict[str, Any]:
        return {"start_rank": self.start_rank, "end_rank": self.end_rank,
                "sampling": self.sampling, "seed": self.seed,
                "max_score_ratio": self.max_score_ratio, "min_score_gap": self.min_score_gap}

    def describe(self) -> str:
        parts = []
        if self.start_rank or self.end_rank is not None:
            end = "" if self.end_rank is None else f"-{self.end_rank - 1}"
            parts.append(f"ranks {self.start_rank}{end or '+'}")
        if self.sampling != "top":
            parts.append(f"{self.sampling} (seed {self.seed})")
        if self.max_score_ratio is not None:
            parts.append(f"ratio {self.max_score_ratio:g}")
        if self.min_score_gap is not None:
            parts.append(f"gap {self.min_score_gap:g}")
        if self.judge:
            parts.append("judge")
        return ", ".join(parts) or "top-k"


#: the margin recommended for BM25HardNeg (its RECOMMENDED_MAX_SCORE_RATIO)
RATIO = 0.95

#: what ``rare bench`` compares, for speed and for false negatives: plain top-k, a window,
#: a random draw from a window, the margin, and the window with the margin
DEFAULT_VARIANTS = (
    Variant("top-k"),
    Variant("window", start_rank=10),
    Variant("random", start_rank=10, end_rank=60, sampling="random"),
    Variant("margin", max_score_ratio=RATIO),
    Variant("window+margin", start_rank=10, max_score_ratio=RATIO),
)


@dataclass
class Pairs:
    """(query, positive) pairs: each relevant document of a query in turn as the positive."""

    qids: list[str]
    queries: list[str]
    positives: list[str]
    qrels: dict[str, dict[str, int]]
    num_queries: int = 0

    def __len__(self) -> int:
        return len(self.qids)


def make_pairs(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
               known: set[str] | None = None, min_relevant: int = 2) -> Pairs:
    """Every query with at least ``min_relevant`` relevant documents (in ``known``, the
    corpus's ids, when given) once per relevant document, that document the positive."""
    qids: list[str] = []
    texts: list[str] = []
    positives: list[str] = []
    kept: dict[str, dict[str, int]] = {}
    for qid, query in queries.items():
        relevant = sorted(doc for doc, rel in qrels.get(qid, {}).items()
                          if rel > 0 and (known is None or doc in known))
        if len(relevant) < min_relevant:
            continue
        kept[qid] = {doc: qrels[qid][doc] for doc in relevant}
        for doc in relevant:
            qids.append(qid)
            texts.append(query)
            positives.append(doc)
    return Pairs(qids, texts, positives, kept, len(kept))


@dataclass
class NegativeQuality:
    """What one variant mined, against the qrels."""

    variant: str
    settings: str
    pairs: int
    negatives: int
    false_negatives: int
    full_rows: int
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)
    judge: dict[str, int] | None = None
    #: median of each negative's score over its positive's: how hard the negatives are
    #: (above 1: they outscore the positive for its own query)
    hardness: float | None = None

    @property
    def fn_rate(self) -> float:
        return self.false_negatives / self.negatives if self.negatives else 0.0

    @property
    def full_share(self) -> float:
        return self.full_rows / self.pairs if self.pairs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fn_rate": self.fn_rate, "full_share": self.full_share}


def measure_negatives(retriever: Retriever, pairs: Pairs, variants: Sequence[Variant],
                      num_neg: int = 3, threads: int | None = None,
                      judge: Any = None, judge_reserve: int | None = None,
                      progress: Callable[[str], None] | None = None) -> list[NegativeQuality]:
    """Mine every pair under each variant and count false negatives against the qrels.

    ``judge`` (a ``rare_stages.judge.FalseNegativeJudge``) is needed for variants with
    ``judge=True``: those mine ``num_neg + judge_reserve`` candidates (default
    ``2 * num_neg`` extra), let the judge drop the ones it says answer the query and refill
    from the rest, as ``BM25HardNeg(judge=...)`` does.
    """
    out = []
    for variant in variants:
        if variant.judge and judge is None:
            raise InputError(f"variant {variant.name!r} needs a judge (an LLM serving)")
        pool = num_neg + (2 * num_neg if judge_reserve is None else judge_reserve) \
            if variant.judge else num_neg
        start = time.perf_counter()
        result = retriever.mine(pairs.queries, pairs.positives, pool, threads=threads,
                                **variant.mine_settings())
        seconds = time.perf_counter() - start
        negatives: list[list[str]] = [list(n) for n in result]
        judge_counts = None
        if variant.judge:
            negatives, judge_counts = _judged(retriever, pairs, negatives, num_neg, judge,
                                              variant.name)
        fn = sum(1 for qid, negs in zip(pairs.qids, negatives)
                 for doc in negs if pairs.qrels[qid].get(doc, 0) > 0)
        ratios: list[float] = []
        for negs, ids, scores, positive in zip(negatives, result, result.scores,
                                               result.positive_scores):
            if positive:
                score_of = dict(zip(ids, scores))
                ratios.extend(score_of[d] / positive for d in negs)
        quality = NegativeQuality(
            variant.name, variant.describe(), len(pairs), sum(map(len, negatives)), fn,
            sum(1 for negs in negatives if len(negs) >= num_neg), seconds,
            dict(result.skipped), judge_counts,
            statistics.median(ratios) if ratios else None)
        out.append(quality)
        if progress is not None:
            progress(f"  {variant.name}: false negatives {quality.fn_rate:.1%}, full rows "
                     f"{quality.full_share:.1%} ({seconds:.1f} s)")
    return out


def _judged(retriever: Retriever, pairs: Pairs, pools: list[list[str]], num_neg: int,
            judge: Any, name: str) -> tuple[list[list[str]], dict[str, int]]:
    wanted = sorted({d for pool in pools for d in pool} | set(pairs.positives))
    text_of = dict(zip(wanted, retriever.get_texts(wanted)))
    kept, counts = judge.judge_candidates(
        pairs.queries, [text_of.get(p) for p in pairs.positives],
        [[(d, text_of.get(d) or "") for d in pool] for pool in pools], num_neg,
        desc=f"judge ({name})")
    return kept, dict(counts)


def print_negatives(rows: Sequence[NegativeQuality | Mapping[str, Any]], title: str,
                    echo: Callable[[str], None] = print) -> None:
    """The false-negative table: one line per variant."""
    echo(f"\n{title}")
    echo(f"{'variant':<22}{'settings':<30}{'pairs':>6}{'FN rate':>9}{'full rows':>11}"
         f"{'neg/pos':>9}{'above margin':>14}{'seconds':>9}")
    for row in rows:
        r = row.as_dict() if isinstance(row, NegativeQuality) else dict(row)
        hardness = "-" if r.get("hardness") is None else f"{r['hardness']:.2f}"
        echo(f"{r['variant'][:21]:<22}{r['settings'][:29]:<30}{r['pairs']:>6}"
             f"{r['fn_rate']:>9.1%}{r['full_share']:>11.1%}{hardness:>9}"
             f"{r['skipped'].get('above_margin', 0):>14}{r['seconds']:>9.2f}")
        if r.get("judge"):
            j = r["judge"]
            echo(f"{'':<22}judge: {j['judge_calls']} questions, {j['judge_dropped']} dropped, "
                 f"{j['judge_failed']} unanswered; control {j['judge_control_no']} of "
                 f"{j['judge_control']} positives judged not to answer")


# -- BEIR-layout collections (corpus.jsonl, queries.jsonl, qrels/test.tsv) -----------------
def read_beir_queries(path: str | Path) -> dict[str, str]:
    """Query text by id from a BEIR ``queries.jsonl`` (``{"_id", "text"}`` per line)."""
    path = Path(path)
    queries: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "_id" not in row or not isinstance(row.get("text"), str):
            raise InputError(f"{path}: line {lineno}: expected {{\"_id\", \"text\"}}")
        queries[str(row["_id"])] = row["text"]
    return queries


def read_beir_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """``{qid: {doc_id: relevance}}`` from a BEIR ``qrels/*.tsv`` (a header, then
    ``query-id<TAB>corpus-id<TAB>score``)."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        parts = line.split("\t")
        if lineno == 1 and parts[0] == "query-id" or not line.strip():
            continue
        if len(parts) != 3:
            raise InputError(f"{path}: line {lineno}: expected 'query-id<TAB>corpus-id<TAB>"
                             f"score', got {line[:60]!r}")
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
        except ValueError:
            raise InputError(f"{path}: line {lineno}: score {parts[2]!r} is not an "
                             "integer") from None
    return qrels
