"""BM25HardNeg: documents lexically close to each question that are not its positive."""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path
from typing import Any

from rare import Operator, Retriever, StepContext
from rare.errors import InputError
from rare.formats import Records
from rare_stages.common import Tally

log = logging.getLogger(__name__)


def resolve_retriever(retriever: str | Retriever | None,
                      options: dict[str, Any]) -> tuple[Retriever, bool]:
    """The retriever to mine with, and whether we created it (and so must close it)."""
    import rare.retrievers

    if isinstance(retriever, Retriever):
        return retriever, False
    return rare.retrievers.create(retriever, **options), True


class BM25HardNeg(Operator):
    """Mines ``num_neg`` BM25 hard negatives for every question.

    By default the rows' own texts are indexed (in :meth:`prepare`, which sees every row
    before the first batch is mined) and each row's text is its positive, excluded by id
    (``input_id_key`` column, else the row number) and by the near-duplicate rule of the
    retriever. Pass a retriever that already holds a corpus (for example one opened from a
    saved index) with ``index_rows=False`` to mine from that corpus instead.
    ``hard_negatives`` holds the negatives' texts and ``hard_negatives_ids`` their ids;
    ``hardneg_shortfall`` counts the negatives a row is missing. A retriever this operator
    created is closed when the step ends; one passed in is left open.
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
        self.needs_all_rows = index_rows
        self.threads = threads
        self.retriever: Retriever | None = None
        self._owns_retriever = False
        self.configure()

    def configure(self, input_question_key: str = "question", input_text_key: str = "text",
                  output_negatives_key: str = "hard_negatives", num_neg: int | None = None,
                  start_rank: int | None = None, input_id_key: str | None = None,
                  output_ids_key: str | None = None) -> None:
        """Per-run settings, as the reference's ``run()`` took them."""
        self.input_question_key = input_question_key
        self.input_text_key = input_text_key
        self.output_negatives_key = output_negatives_key
        self.run_num_neg = self.num_neg if num_neg is None else num_neg
        self.run_start_rank = self.start_rank if start_rank is None else start_rank
        self.input_id_key = input_id_key
        self.output_ids_key = output_ids_key or f"{output_negatives_key}_ids"

    def input_columns(self) -> list[str]:
        return [self.input_question_key, self.input_text_key] + (
            [self.input_id_key] if self.input_id_key else [])

    def output_columns(self) -> list[str]:
        return [self.output_negatives_key, self.output_ids_key]

    # -- the step ----------------------------------------------------------------------------
    def share_prepared(self, directory: Path) -> dict[str, Any] | None:
        """Build the index in ``directory`` (a retriever that keeps its index in a folder,
        such as tantivy's ``path``); workers open it there and mine without indexing."""
        import rare.retrievers
        from rare import plugins

        if isinstance(self.retriever_spec, Retriever) or not self.index_rows:
            return None
        name = self.retriever_spec or rare.retrievers.default_name()
        cls = plugins.get("retrievers", name)
        try:
            takes_path = "path" in inspect.signature(cls).parameters
        except (TypeError, ValueError):
            takes_path = False
        if not takes_path:
            return None
        self.retriever_spec = name
        self.retriever_options = {**self.retriever_options,
                                  "path": str(Path(directory) / "index")}
        return {"retriever": name, "retriever_options": dict(self.retriever_options),
                "num_neg": self.num_neg, "start_rank": self.start_rank,
                "index_rows": False, "threads": self.threads}

    def open(self, ctx: StepContext) -> None:
        super().open(ctx)
        self.tally = Tally()
        self._seen_ids: dict[str, int] = {}
        self._seen_texts: dict[bytes, int] = {}
        self._duplicates: list[str] = []
        self._short = 0
        self.retriever, self._owns_retriever = resolve_retriever(self.retriever_spec,
                                                                 self.retriever_options)

    def ids_of(self, rows: Records, ctx: StepContext) -> list[str]:
        """Each row's document id, checked to be unique over the whole step."""
        if not self.input_id_key:
            return [f"row{ctx.start + i}" for i in range(len(rows))]
        ids = []
        for i, row in enumerate(rows):
            doc_id = str(row.get(self.input_id_key))
            first = self._seen_ids.setdefault(doc_id, ctx.start + i)
            if first != ctx.start + i:
                raise InputError(f"{ctx.source}: row {ctx.start + i}: field "
                                 f"{self.input_id_key!r} repeats id {doc_id!r} of row {first}")
            ids.append(doc_id)
        return ids

    def prepare(self, batches: Any, ctx: StepContext) -> None:
        """Index every row's text (the corpus the negatives come from)."""
        assert self.retriever is not None
        problems = 0
        for rows in batches:
            ids = self.ids_of(rows, ctx)
            texts, missing = self.text_values(rows, self.input_text_key, ctx)
            problems += len(missing)
            pairs = []
            for i, (doc_id, text) in enumerate(zip(ids, texts)):
                if text is None:
                    continue
                pairs.append((doc_id, text))
                digest = hashlib.blake2b(text.encode("utf-8"), digest_size=12).digest()
                first = self._seen_texts.setdefault(digest, ctx.start + i)
                if first != ctx.start + i and len(self._duplicates) < 6:
                    self._duplicates.append(f"row {ctx.start + i} repeats row {first}")
            self.retriever.index([d for d, _ in pairs], [t for _, t in pairs])
        self.retriever.commit()
        self._seen_texts.clear()
        if self._duplicates:
            shown = "; ".join(self._duplicates[:5])
            log.warning("%s: some rows have the same %r as an earlier row (%s%s)", ctx.source,
                        self.input_text_key, shown, ", ..." if len(self._duplicates) > 5 else "")
        if problems:
            log.warning("%d row(s) have no text and are skipped", problems)
        self._seen_ids.clear()  # transform() checks ids again, batch by batch

    def transform(self, rows: Records, ctx: StepContext) -> Records:
        retriever = self.retriever
        assert retriever is not None
        num_neg = self.run_num_neg
        ids = self.ids_of(rows, ctx)
        texts, text_problems = self.text_values(rows, self.input_text_key, ctx)
        questions, _ = self.text_values(rows, self.input_question_key, ctx)
        n = len(rows)
        errors: list[str | None] = [None] * n
        for i in range(n):
            if texts[i] is None:
                errors[i] = f"skipped: {text_problems[i]}"
            elif questions[i] is None:
                errors[i] = f"skipped: no {self.input_question_key!r} (an earlier step failed)"
        todo = [i for i in range(n) if errors[i] is None]
        negatives: list[list[str] | None] = [None] * n
        negative_ids: list[list[str] | None] = [None] * n
        shortfall: list[int | None] = [None] * n
        if todo:
            result = retriever.mine([questions[i] or "" for i in todo], [ids[i] for i in todo],
                                    num_neg, start_rank=self.run_start_rank,
                                    threads=self.threads,
                                    positive_texts=[texts[i] for i in todo])
            wanted = sorted({d for neg in result for d in neg})
            text_of = dict(zip(wanted, retriever.get_texts(wanted)))
            for j, i in enumerate(todo):
                # A negative whose text the index cannot give back is dropped, never
                # replaced by an empty string; it counts as missing.
                kept = [d for d in result[j] if text_of.get(d) is not None]
                negative_ids[i] = kept
                negatives[i] = [str(text_of[d]) for d in kept]
                shortfall[i] = num_neg - len(kept)
                if shortfall[i]:
                    lost = len(result[j]) - len(kept)
                    why = (f"; {lost} had no stored text" if lost else
                           " (too few lexically close documents)")
                    errors[i] = f"shortfall: found {len(kept)} of {num_neg} hard negatives{why}"
        short = sum(1 for s in shortfall if s)
        self._short += short
        for i, row in enumerate(rows):
            row[self.output_negatives_key] = negatives[i]
            row[self.output_ids_key] = negative_ids[i]
            row["hardneg_shortfall"] = shortfall[i]
            row["hardneg_error"] = errors[i]
        self.stats = self.tally.add(failed=sum(e is not None for e in errors), short=short)
        self.stats["retriever"] = retriever.name or type(retriever).__name__
        return rows

    def close(self) -> None:
        if self._short:
            log.warning("%d rows got fewer than %d hard negatives (see column "
                        "hardneg_shortfall)", self._short, self.run_num_neg)
        if self._owns_retriever and self.retriever is not None:
            close = getattr(self.retriever, "close", None)
            if close is not None:
                close()
        self._owns_retriever = False


RAREBM25HardNegGenerator = BM25HardNeg
