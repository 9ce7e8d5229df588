"""Full-ranking Recall@K / NDCG@K of COBRA recommendations."""

from .evaluate import evaluate_model, evaluate_split
from .metrics import ranking_metrics
from .sampling import sample_rows, sample_split

__all__ = ["evaluate_model", "evaluate_split", "ranking_metrics", "sample_rows", "sample_split"]
