"""BM25HardNeg: documents lexically close to each question that are not its positive."""

from __future__ import annotations

import logging
from typing import Any

from rare import Operator, Retriever
from rare.errors import InputError, UnknownNameError
from rare_stages.common import StageTimer

log = logging.getLogger(__name__)

#: tried in order when no retriever is named
DEFAULT_RETRIEVERS = ("tantivy", "gensim")


def resolve_retriever(retriever: str | Retriever | None, options: dict[str, Any]) -> Retriever:
    import rare.retrievers

    if isinstance(retriever, Retriever):
        return retriever
    if retriever is not None:
        return rare.retrievers.create(retriever, **options)
    known = rare.retrievers.names()
    for name in DEFAULT_RETRIEVERS:
        if name in known:
            return rare.retrievers.create(name, **options)
    raise UnknownNameError(
        f"no BM25 retriever is installed (known retrievers: {', '.join(known) or 'none'}); "
        "install one with: pip install rare-bm25-rs"
    )


class BM25HardNeg(Operator):
    """Mines ``num_neg`` BM25 hard negatives for every question.

    By default the rows' own texts are indexed and each row's text is its positive,
    excluded by id (``input_id_key`` column, else the row number) and by the near-duplicate
    rule of the retriever. Pass a retriever that already holds a corpus (for example one
    opened from a saved index) with ``index_rows=False`` to mine from that corpus instead.
    ``hard_negatives`` holds the negatives' texts and ``hard_negatives_ids`` their ids;
    ``hardneg_shortfall`` counts the negatives a row is missing.
    """

    def __init__(self, retriever: str | Retriever | None = None, num_neg: int = 3,
                 start_rank: int = 0, index_rows: bool = True,
                 retriever_options: dict[str, Any] | None = None,
                 threads: int | None = None) -> None:
        super().__init__()
        self.retriever_spec = retriever
        self.retriever_options = dict(retriever_options or {})
        self.num_neg = num_neg
        self.start_rank = start_rank
        self.index_rows = index_rows
        self.threads = threads
        self.retriever: Retriever | None = None

    def run(self, storage: Any, input_question_key: str = "question",
            input_text_key: str = "text", output_negatives_key: str = "hard_negatives",
            num_neg: int | None = None, start_rank: int | None = None,
            input_id_key: str | None = None, output_ids_key: str | None = None,
            **_: Any) -> list[str]:
        timer = StageTimer()
        num_neg = self.num_neg if num_neg is None else num_neg
        start_rank = self.start_rank if start_rank is None else start_rank
        output_ids_key = output_ids_key or f"{output_negatives_key}_ids"
        df, source = self.read_input(storage, [input_question_key, input_text_key]
                                     + ([input_id_key] if input_id_key else []))
        if df is None:
            return [output_negatives_key, output_ids_key]
        self.warn_existing(df, [output_negatives_key, output_ids_key], source)
        texts, text_problems = self.text_column(df, input_text_key, source)
        questions, _ = self.text_column(df, input_question_key, source)
        self.warn_problems(text_problems, "have no text and are skipped")
        self.warn_duplicates(texts, input_text_key, source)
        if input_id_key:
            ids = [str(v) for v in df[input_id_key].tolist()]
            seen: dict[str, int] = {}
            for i, doc_id in enumerate(ids):
                if doc_id in seen:
                    raise InputError(f"{source}: row {i}: field {input_id_key!r} repeats id "
                                     f"{doc_id!r} of row {seen[doc_id]}")
                seen[doc_id] = i
        else:
            ids = [f"row{i}" for i in range(len(df))]

        retriever = resolve_retriever(self.retriever_spec, self.retriever_options)
        self.retriever = retriever
        if self.index_rows:
            pairs = [(d, t) for d, t in zip(ids, texts) if t is not None]
            retriever.index([d for d, _ in pairs], [t for _, t in pairs])
            retriever.commit()

        todo = [i for i, q in enumerate(questions) if q is not None and texts[i] is not None]
        negatives: list[list[str] | None] = [None] * len(df)
        negative_ids: list[list[str] | None] = [None] * len(df)
        shortfall: list[int | None] = [None] * len(df)
        errors: list[str | None] = [None] * len(df)
        for i in range(len(df)):
            if texts[i] is None:
                errors[i] = f"skipped: {text_problems[i]}"
            elif questions[i] is None:
                errors[i] = f"skipped: no {input_question_key!r} (an earlier step failed)"
        if todo:
            result = retriever.mine([questions[i] for i in todo], [ids[i] for i in todo],
                                    num_neg, start_rank=start_rank, threads=self.threads,
                                    positive_texts=[texts[i] for i in todo])
            neg_ids = sorted({d for neg in result for d in neg})
            text_of = dict(zip(neg_ids, retriever.get_texts(neg_ids)))
            for j, i in enumerate(todo):
                negative_ids[i] = list(result[j])
                negatives[i] = [text_of[d] or "" for d in result[j]]
                shortfall[i] = result.shortfall[j]
                if shortfall[i]:
                    errors[i] = (f"shortfall: found {len(result[j])} of {num_neg} hard "
                                 "negatives (too few lexically close documents)")
            if result.short_queries:
                log.warning("%d of %d rows got fewer than %d hard negatives "
                            "(see column hardneg_shortfall)",
                            len(result.short_queries), len(todo), num_neg)
        df[output_negatives_key] = negatives
        df[output_ids_key] = negative_ids
        df["hardneg_shortfall"] = shortfall
        df["hardneg_error"] = errors
        storage.write(df)
        self.stats = timer.finish(len(df), len(df), sum(e is not None for e in errors),
                                  retriever=retriever.name or type(retriever).__name__,
                                  short=sum(1 for s in shortfall if s))
        return [output_negatives_key, output_ids_key]


RAREBM25HardNegGenerator = BM25HardNeg
