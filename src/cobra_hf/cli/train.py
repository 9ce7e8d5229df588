"""`cobra-hf train`: see `cobra_hf.training.train`."""

from ..training.train import main

__all__ = ["main"]
