"""`WeightAverage`: an exponential moving average (EMA) of the trainable weights, kept beside the Trainer's.

The raw weights at the end of a run are one noisy point of the last steps; their running average generalises
better (Polyak averaging). The average is what validation scores and what the run saves; each checkpoint-N keeps it
in `weight_average.safetensors`, so a resumed run continues the same average.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

WEIGHT_AVERAGE_FILE = "weight_average.safetensors"
# the decay ramps up as min(decay, (1 + n) / (RAMP + n)) after n updates, so the first steps' (random) weights are
# forgotten quickly instead of being kept with weight decay**n
RAMP = 10


class WeightAverage(TrainerCallback):
    """After every optimizer step: average <- decay_n * average + (1 - decay_n) * weights, over the model's
    trainable floating-point parameters, decay_n = min(decay, (1 + n) / (10 + n)).

    decay: 0 < decay < 1; the average spans about 1 / (1 - decay) steps (0.998: the last ~500).
    resume_from: a checkpoint folder the run resumes from; its average is loaded (when it has none, e.g. it was
        written by a run without averaging, the average restarts from the checkpoint's weights, with a warning).
    """

    def __init__(self, decay: float, resume_from: str | os.PathLike | None = None):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"weight average decay must be in (0, 1), got {decay}.")
        self.decay = float(decay)
        self.resume_from = resume_from
        self.names: list[str] = []
        self.params: list[torch.nn.Parameter] = []
        self.average: list[torch.Tensor] = []
        self.updates = 0

    # ---------------------------------------------------------------------------------------------- Trainer events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.attach(model, state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.update()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.copy_to_model(model)

    # ---------------------------------------------------------------------------------------------- the average
    def attach(self, model: torch.nn.Module, global_step: int = 0) -> None:
        """Starts the average from the model's weights, or from the resumed checkpoint's saved average."""
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.average = [p.detach().clone() for p in self.params]
        self.updates = global_step
        if self.resume_from is None:
            return
        path = Path(self.resume_from) / WEIGHT_AVERAGE_FILE
        if not path.is_file():
            logger.warning("%s has no %s: the weight average restarts from the checkpoint's weights.",
                           self.resume_from, WEIGHT_AVERAGE_FILE)
            return
        saved = load_file(str(path))
        missing = [name for name in self.names if name not in saved]
        wrong = [name for name, p in zip(self.names, self.params) if name in saved and saved[name].shape != p.shape]
        if missing or wrong or len(saved) != len(self.names):
            raise ValueError(
                f"{path} does not match the model: missing {missing[:5]}, wrong shapes {wrong[:5]}, "
                f"{len(saved)} tensors saved for {len(self.names)} parameters. Resume with the model that wrote it."
            )
        self.average = [saved[name].to(p.device, p.dtype) for name, p in zip(self.names, self.params)]

    @torch.no_grad()
    def update(self) -> None:
        if not self.params:
            return
        decay = min(self.decay, (1 + self.updates) / (RAMP + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)
        self.updates += 1

    def save(self, folder: Path) -> None:
        """Writes the average into a checkpoint folder (through a temporary file: never a half-written one)."""
        if not self.params or not folder.is_dir():
            return
        tmp = folder / (WEIGHT_AVERAGE_FILE + ".tmp")
        save_file({name: t.detach().cpu().contiguous() for name, t in zip(self.names, self.average)}, str(tmp))
        os.replace(tmp, folder / WEIGHT_AVERAGE_FILE)

    @torch.no_grad()
    def _swap(self, model) -> None:
        for p, avg in zip(self.params, self.average):
            held = p.detach().clone()
            p.copy_(avg)
            avg.copy_(held)
        if hasattr(model, "invalidate_caches"):  # cached catalog vectors belong to the other weights
            model.invalidate_caches()

    @contextlib.contextmanager
    def swapped_in(self, model):
        """Within the block the model holds the averaged weights (for evaluation); its own come back after."""
        if not self.params:
            yield model
            return
        self._swap(model)
        try:
            yield model
        finally:
            self._swap(model)

    @torch.no_grad()
    def copy_to_model(self, model) -> None:
        """The end of training: the model keeps the averaged weights (and the run saves them)."""
        for p, avg in zip(self.params, self.average):
            p.copy_(avg)
        if model is not None and hasattr(model, "invalidate_caches"):
            model.invalidate_caches()
