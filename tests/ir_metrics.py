"""The IR metrics live in the core (``rare.evaluation``); tests import them from here too."""

from rare.evaluation import *  # noqa: F403
from rare.evaluation import (  # noqa: F401
    mean_metric,
    mrr,
    ndcg,
    ndcg_at_k,
    overlap_at_k,
    read_qrels,
    read_topics,
    recall,
    recall_at_k,
    reciprocal_rank,
)
