"""The three RARE stages as a rare-synth plugin."""

from rare_stages.distill import ReasonDistill
from rare_stages.doc2query import Doc2Query
from rare_stages.hardneg import BM25HardNeg
from rare_stages.judge import NegativeJudge

RAREDoc2QueryGenerator = Doc2Query
RAREBM25HardNegGenerator = BM25HardNeg
RAREReasonDistillGenerator = ReasonDistill

__all__ = ["BM25HardNeg", "Doc2Query", "NegativeJudge", "ReasonDistill", "RAREBM25HardNegGenerator",
           "RAREDoc2QueryGenerator", "RAREReasonDistillGenerator"]
