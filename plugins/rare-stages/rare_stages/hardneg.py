"""BM25HardNeg: documents lexically close to each question that are not its positive."""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path
from typing import Any

from rare import LLMServing, Operator, Retriever, StepContext
from rare.errors import InputError, SettingsError
from rare.formats import Records
from rare.retriever import SKIP_REASONS, check_mining_settings
from rare.text import check_language
from rare_stages.common import Tally
from rare_stages.judge import (
    Candidate,
    FalseNegativeJudge,
    JudgeItem,
    JudgeOutcome,
    default_serving,
    judge_stats,
)

log = logging.getLogger(__name__)

#: The margin to use on a real corpus: skip candidates scoring above 95% of the positive's
#: own score. Measured on CACM and STARD (README, "Hard negatives worth training on"), it
#: cuts the false negatives of plain top-k by about three quarters while 94% and 99% of the
#: pairs keep all their negatives, and the negatives stay hard (median score 0.93 of the
#: positive's). Not the default: on a corpus of a few dozen documents (the reference's
#: example is 10 overlapping chunks) few documents score below the positive, and most rows
#: would come up short.
RECOMMENDED_MAX_SCORE_RATIO = 0.95


def resolve_retriever(retriever: str | Retriever | None, options: dict[str, Any],
                      language: str | None = None) -> tuple[Retriever, bool]:
    """The retriever to mine with, and whether we created it (and so must close it).

    ``language`` (None: the retriever's own setting) goes to a retriever created here; one
    passed in must already have it (or be ``auto``).
    """
    import rare.retrievers

    if isinstance(retriever, Retriever):
        have = getattr(retriever, "language", "en")
        if language not in (None, "auto") and have not in ("auto", language):
            raise SettingsError(
                f"BM25HardNeg: language={language!r} but the retriever given "
                f"({retriever!r}) is for {have!r}; create it with language={language!r}")
        return retriever, False
    if language is not None:
        given = options.get("language")
        if given is not None and given != language:
            raise SettingsError(f"BM25HardNeg: language={language!r} but retriever_options "
                                f"say language={given!r}")
        options = {**options, "language": language}
    return rare.retrievers.create(retriever, **options), True


class BM25HardNeg(Operator):
    """Mines ``num_neg`` BM25 hard negatives for every question.

    By default the rows' own texts are indexed (in :meth:`prepare`, which sees every row
    before the first batch is mined) and each row's text is its positive, excluded by id
    (``input_id_key`` column, else the row number) and by the near-duplicate rule of the
    retriever. Pass a retriever that already holds a corpus (for example one opened from a
    saved index) with ``index_rows=False`` to mine from that corpus instead; a positive that
    corpus does not hold is scored from its text against the corpus's statistics.

    Which candidates become negatives (see :meth:`rare.Retriever.mine`): the rank window
    ``start_rank``..``end_rank``, ``sampling`` ``"top"`` or ``"random"`` (seeded by
    ``seed``), and a margin against the positive's own score: ``max_score_ratio`` (skip a
    candidate scoring above that fraction of it; 0.95 is the value to use on a real corpus,
    see :data:`RECOMMENDED_MAX_SCORE_RATIO`; off by default) and ``min_score_gap``
    (skip one scoring less than that far below it). ``judge`` (an LLM serving, or True for
    the pipeline's) asks the teacher whether each negative in fact answers the question;
    one that does is dropped and replaced from the next ``judge_reserve`` candidates (see
    :mod:`rare_stages.judge`). ``reserve`` keeps that many further candidates in the
    ``hardneg_reserve`` column, for a later ``NegativeJudge`` step.

    Columns: ``hard_negatives`` (texts), ``hard_negatives_ids``, ``hard_negatives_scores``,
    ``hardneg_positive_score`` (the positive's own score for the question),
    ``hardneg_shortfall`` (negatives a row is missing) and ``hardneg_error``; with the judge
    ``hardneg_judged`` and ``hardneg_control``. The stats count skipped candidates by
    reason (``skipped_same_id``, ``skipped_near_duplicate``, ``skipped_above_margin``,
    ``skipped_outside_window``) and the judge's work. A retriever this operator created is
    closed when the step ends; one passed in is left open. A row that got fewer than
    ``num_neg`` says so in ``hardneg_warning`` (a warning, not a failure: the row keeps what
    was found and goes on).

    ``language`` (``"en"``, ``"zh"`` or ``"auto"``; None: the retriever's own setting,
    ``"en"`` by default) is the language of the retriever created here: ``"auto"`` decides
    from the rows indexed in :meth:`prepare` and logs what it picked. The step's stats say
    which language mined.
    """

    def __init__(self, retriever: str | Retriever | None = None, num_neg: int = 3,
                 start_rank: int = 0, index_rows: bool = True,
                 retriever_options: dict[str, Any] | None = None,
                 threads: int | None = None, end_rank: int | None = None,
                 sampling: str = "top", seed: int = 0,
                 max_score_ratio: float | None = None,
                 min_score_gap: float | None = None, depth: int | None = None, reserve: int = 0,
                 judge: LLMServing | bool = False, llm_serving: LLMServing | None = None,
                 judge_reserve: int | None = None, judge_control_rate: float = 0.1,
                 judge_max_attempts: int = 2, judge_max_doc_tokens: int | None = None,
                 language: str | None = None) -> None:
        super().__init__()
        self.language = None if language is None else check_language(language)
        self.retriever_spec = retriever
        self.retriever_options = dict(retriever_options or {})
        self.num_neg = num_neg
        self.start_rank = start_rank
        self.end_rank = end_rank
        self.sampling = sampling
        self.seed = seed
        self.max_score_ratio = max_score_ratio
        self.min_score_gap = min_score_gap
        self.depth = depth
        self.index_rows = index_rows
        self.needs_all_rows = index_rows
        self.threads = threads
        if reserve < 0:
            raise SettingsError(f"reserve must be >= 0, got {reserve}")
        if judge_reserve is not None and judge_reserve < 0:
            raise SettingsError(f"judge_reserve must be >= 0, got {judge_reserve}")
        if not 0 <= judge_control_rate <= 1:
            raise SettingsError(f"judge_control_rate must be in [0, 1], got "
                                f"{judge_control_rate}")
        if judge_max_attempts < 1:
            raise SettingsError(f"judge_max_attempts must be >= 1, got {judge_max_attempts}")
        self.reserve = reserve
        self.retriever: Retriever | None = None
        self._owns_retriever = False
        self.judge: FalseNegativeJudge | None = None
        self._owns_serving = False
        self.judge_reserve = judge_reserve
        if judge is True or isinstance(judge, LLMServing):
            serving = judge if isinstance(judge, LLMServing) else llm_serving
            serving, self._owns_serving = default_serving(serving)
            # The judge's prompts are in each row's language: the step's setting, else
            # (None, "auto") the language of the row's text.
            self.judge = FalseNegativeJudge(serving, seed=seed,
                                            max_attempts=judge_max_attempts,
                                            max_doc_tokens=judge_max_doc_tokens,
                                            control_rate=judge_control_rate,
                                            language=self.language or "auto")
        elif judge not in (False, None):
            raise SettingsError(f"judge must be an LLM serving, True or False, got {judge!r}")
        self.configure()

    @classmethod
    def wants_llm(cls, init: dict[str, Any]) -> bool:
        """Whether a pipeline must hand this step its serving (only to judge)."""
        return init.get("judge") is True

    def configure(self, input_question_key: str = "question", input_text_key: str = "text",
                  output_negatives_key: str = "hard_negatives", num_neg: int | None = None,
                  start_rank: int | None = None, input_id_key: str | None = None,
                  output_ids_key: str | None = None, end_rank: int | None = None,
                  sampling: str | None = None, seed: int | None = None,
                  max_score_ratio: float | None = None,
                  min_score_gap: float | None = None) -> None:
        """Per-run settings, as the reference's ``run()`` took them; a mining setting left
        None keeps the constructor's."""
        self.input_question_key = input_question_key
        self.input_text_key = input_text_key
        self.output_negatives_key = output_negatives_key
        self.run_num_neg = self.num_neg if num_neg is None else num_neg
        self.run_start_rank = self.start_rank if start_rank is None else start_rank
        self.run_end_rank = self.end_rank if end_rank is None else end_rank
        self.run_sampling = self.sampling if sampling is None else sampling
        self.run_seed = self.seed if seed is None else seed
        self.run_ratio = self.max_score_ratio if max_score_ratio is None else max_score_ratio
        self.run_gap = self.min_score_gap if min_score_gap is None else min_score_gap
        check_mining_settings(self.run_num_neg, self.run_start_rank, self.run_end_rank,
                              self.run_sampling, self.run_ratio, self.run_gap,
                              error=SettingsError)
        self.input_id_key = input_id_key
        self.output_ids_key = output_ids_key or f"{output_negatives_key}_ids"
        self.output_scores_key = f"{output_negatives_key}_scores"

    def input_columns(self) -> list[str]:
        return [self.input_question_key, self.input_text_key] + (
            [self.input_id_key] if self.input_id_key else [])

    def output_columns(self) -> list[str]:
        columns = [self.output_negatives_key, self.output_ids_key, self.output_scores_key,
                   "hardneg_positive_score", "hardneg_shortfall", "hardneg_error"]
        if self.judge is not None:
            columns += ["hardneg_judged", "hardneg_control"]
        elif self.reserve:
            columns.append("hardneg_reserve")
        return columns

    # -- the step ----------------------------------------------------------------------------
    def calls_llm(self) -> bool:
        """Only the false-negative judge calls the LLM; mining alone does not."""
        return self.judge is not None

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
        self.tally = Tally(self.judge.serving if self.judge is not None else None)
        self._not_indexed = 0
        self._seen_ids: dict[str, int] = {}
        self._seen_texts: dict[bytes, int] = {}
        self._duplicates: list[str] = []
        self._short = 0
        self.retriever, self._owns_retriever = resolve_retriever(
            self.retriever_spec, self.retriever_options, self.language)

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

    def pool_size(self) -> int:
        """Candidates mined per row: ``num_neg``, plus the judge's or the reserve's."""
        num_neg = self.run_num_neg
        if self.judge is not None:
            extra = 2 * num_neg if self.judge_reserve is None else self.judge_reserve
            return num_neg + max(0, extra)
        return num_neg + self.reserve

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
        chosen: list[list[Candidate] | None] = [None] * n
        reserve: list[list[Candidate] | None] = [None] * n
        pos_scores: list[float | None] = [None] * n
        shortfall: list[int | None] = [None] * n
        lost = [0] * n
        outcomes: dict[int, JudgeOutcome] = {}
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        warnings: list[str | None] = [None] * n
        if todo:
            pool = self.pool_size()
            # Only the options in use are passed: a third party's mine() written before
            # them keeps working as long as they are not asked for.
            options: dict[str, Any] = {
                key: value for key, value, default in (
                    ("end_rank", self.run_end_rank, None),
                    ("sampling", self.run_sampling, "top"), ("seed", self.run_seed, 0),
                    ("max_score_ratio", self.run_ratio, None),
                    ("min_score_gap", self.run_gap, None)) if value != default}
            result = retriever.mine([questions[i] or "" for i in todo], [ids[i] for i in todo],
                                    pool, start_rank=self.run_start_rank,
                                    threads=self.threads, depth=self.depth,
                                    positive_texts=[texts[i] for i in todo], **options)
            skipped = result.skipped
            self._not_indexed += sum(1 for flag in result.positive_in_index if flag is False)
            wanted = sorted({d for neg in result for d in neg})
            text_of = dict(zip(wanted, retriever.get_texts(wanted)))
            items: list[JudgeItem] = []
            for j, i in enumerate(todo):
                pos_scores[i] = result.positive_scores[j]
                ranks: list[int | None] = list(result.ranks[j]) or [None] * len(result[j])
                # A negative whose text the index cannot give back is dropped, never
                # replaced by an empty string; it counts as missing.
                cands = [Candidate(d, str(text_of[d]), float(s), r)
                         for d, s, r in zip(result[j], result.scores[j], ranks)
                         if text_of.get(d) is not None]
                lost[i] = len(result[j]) - len(cands)
                if self.judge is not None:
                    question, positive = questions[i] or "", texts[i] or ""
                    items.append(JudgeItem(question, cands, num_neg, positive,
                                           self.judge.is_control(question, positive)))
                    continue
                chosen[i], reserve[i] = cands[:num_neg], cands[num_neg:]
            if self.judge is not None:
                judged = self.judge.judge(items, journal=ctx.journal, desc="BM25HardNeg judge")
                for i, outcome in zip(todo, judged):
                    outcomes[i] = outcome
                    chosen[i] = outcome.kept
            for i in todo:
                kept = chosen[i] or []
                shortfall[i] = num_neg - len(kept)
                if shortfall[i]:
                    why = " (too few lexically close documents)"
                    if i in outcomes and outcomes[i].dropped:
                        why = f"; the judge dropped {outcomes[i].dropped} that answer the " \
                              "question"
                    if lost[i]:
                        why = f"; {lost[i]} had no stored text"
                    warnings[i] = (f"shortfall: found {len(kept)} of {num_neg} hard "
                                   f"negatives{why}")
        short = sum(1 for s in shortfall if s)
        self._short += short
        for i, row in enumerate(rows):
            final = chosen[i]
            row[self.output_negatives_key] = None if final is None else [c.text for c in final]
            row[self.output_ids_key] = None if final is None else [c.id for c in final]
            row[self.output_scores_key] = None if final is None else [c.score for c in final]
            row["hardneg_positive_score"] = pos_scores[i]
            row["hardneg_shortfall"] = shortfall[i]
            row["hardneg_error"] = errors[i]
            row["hardneg_warning"] = warnings[i]
            if self.judge is not None:
                verdicts = outcomes.get(i)
                row["hardneg_judged"] = None if verdicts is None else verdicts.judged
                row["hardneg_control"] = None if verdicts is None else verdicts.control
            elif self.reserve:
                extra = reserve[i]
                row["hardneg_reserve"] = None if extra is None else [
                    {"id": c.id, "text": c.text, "score": c.score, "rank": c.rank}
                    for c in extra]
        counts = {f"skipped_{reason}": count for reason, count in skipped.items()}
        if self.judge is not None:
            counts.update(judge_stats(list(outcomes.values())))
        self.stats = self.tally.add(failed=sum(e is not None for e in errors), short=short,
                                    **counts)
        self.stats["retriever"] = retriever.name or type(retriever).__name__
        self.stats["language"] = getattr(retriever, "language", None)
        if self._not_indexed:
            self.stats["positive_not_indexed"] = self._not_indexed
        return rows

    def close(self) -> None:
        if self._short:
            log.warning("%d rows got fewer than %d hard negatives (see column "
                        "hardneg_shortfall)", self._short, self.run_num_neg)
        if getattr(self, "_not_indexed", 0):
            log.warning("%d positive(s) are not in the retriever's index: their scores "
                        "(hardneg_positive_score, and the margin) come from their texts "
                        "against the index's statistics", self._not_indexed)
        if self._owns_retriever and self.retriever is not None:
            close = getattr(self.retriever, "close", None)
            if close is not None:
                close()
        self._owns_retriever = False
        if self._owns_serving and self.judge is not None:
            self.judge.serving.close()
            self._owns_serving = False


RAREBM25HardNegGenerator = BM25HardNeg
