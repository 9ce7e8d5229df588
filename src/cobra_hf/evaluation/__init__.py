"""Full-ranking Recall@K / NDCG@K of COBRA recommendations."""

from .evaluate import evaluate_model, evaluate_split
from .metrics import ranking_metrics

__all__ = ["evaluate_model", "evaluate_split", "ranking_metrics"]
