from rare import hookimpl
from rare_stages import BM25HardNeg, Doc2Query, NegativeJudge, ReasonDistill


@hookimpl
def register_operators(register):
    register(Doc2Query, aliases=("RAREDoc2QueryGenerator",))
    register(BM25HardNeg, aliases=("RAREBM25HardNegGenerator",))
    register(ReasonDistill, aliases=("RAREReasonDistillGenerator",))
    register(NegativeJudge)
