"""The one training loop every stage runs.

A stage builds its modules and optimizer, wraps what a checkpoint must hold in a
:class:`TrainingState`, and hands a ``batch_loss(step)`` function to a :class:`TrainingLoop`. The
loop owns everything else:

- the learning rate of every step (:class:`CosineSchedule`: linear warm-up, cosine decay to a floor);
- resuming from the stage's checkpoint (:meth:`TrainingLoop.resume`) and writing it atomically
  every ``checkpoint_every`` steps and at the last step;
- gradient clipping, the optimizer step and, optionally, an exponential moving average of the
  weights (``diffusers.training_utils.EMAModel``) kept in the checkpoint;
- the CSV loss log and the tqdm progress bar.

    state = TrainingState({"unet": unet, "adapter": adapter}, optimizer, generator=generator)
    loop = TrainingLoop("unet", state, params, CosineSchedule(steps, warmup=100, floor=0.1),
                        checkpoint=run / "unet_ckpt.pt", log=run / "loss.csv")
    loop.resume()
    loop.run(lambda step: StepLoss(unet_batch_loss(...)))

The checkpoint is a ``torch.save`` dict: one entry per module (its ``state_dict``), ``optimizer``,
``step``, and where present ``aux_optimizers`` (name -> ``state_dict``), ``generator`` (a
``torch.Generator`` state), ``rng`` (a numpy ``Generator``'s ``bit_generator.state``) and ``ema``
(``EMAModel.state_dict()``).
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``, so that an interrupted
    run never leaves a half-written file at ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class CosineSchedule:
    """Learning rate of each step: ``base * warm * (floor + (1 - floor) * (1 + cos(pi * step / steps)) / 2)``.

    ``warm`` rises linearly as ``(step + 1) / warmup`` to 1 (no warm-up when ``warmup`` is 0);
    the cosine falls from 1 at step 0 toward ``floor`` at ``steps`` (``floor`` 1 keeps the rate
    constant after the warm-up).

    Args:
        steps: total optimizer steps of the run (>= 1).
        warmup: warm-up steps (>= 0).
        floor: the final fraction of the base rate, in [0, 1].
    """

    steps: int
    warmup: int = 0
    floor: float = 0.0

    def lr(self, base_lr: float, step: int) -> float:
        """The learning rate of (0-based) ``step`` for a parameter group whose peak rate is ``base_lr``."""
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        return base_lr * warm * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * step / self.steps)))


@dataclass(frozen=True)
class StepLoss:
    """What a stage's ``batch_loss(step)`` returns: the scalar loss to minimise, and named terms
    (scalars, read with ``.item()`` by the loop) that the default log row writes after it."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor | float] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRecord:
    """One finished step as the log sees it: ``step`` counts the steps done (1 after the first);
    ``terms`` holds the stage's loss terms and ``after_step`` values; ``lr`` is the first parameter
    group's rate; ``elapsed`` the seconds since :meth:`TrainingLoop.run` began."""

    step: int
    loss: float
    terms: dict[str, float]
    lr: float
    elapsed: float


def _scalar(value: torch.Tensor | float) -> float:
    return value.item() if torch.is_tensor(value) else float(value)


def default_row(record: StepRecord) -> list:
    """``[step, loss, *terms]``, losses with five decimals."""
    return [record.step, f"{record.loss:.5f}", *(f"{v:.5f}" for v in record.terms.values())]


@dataclass
class TrainingState:
    """Everything a checkpoint holds, and its layout on disk.

    Args:
        modules: checkpoint key -> module (``{"model": vae}``, ``{"unet": unet, "adapter": adapter}``).
        optimizer: the stage's optimizer.
        generator: the torch generator the stage draws batches and noise from, if any.
        rng: the numpy generator the stage draws clips from, if any.
        aux_optimizers: name -> an optimizer the stage steps itself (a discriminator's), kept in the
            checkpoint beside the loop's own.
    """

    modules: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    generator: torch.Generator | None = None
    rng: np.random.Generator | None = None
    step: int = 0
    ema: Any = None  # a diffusers EMAModel while the loop keeps an average
    saved_ema: dict | None = field(default=None, repr=False)  # the average a resumed checkpoint held
    aux_optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def state_dict(self) -> dict:
        """The checkpoint dict (see the module docstring)."""
        state = {name: module.state_dict() for name, module in self.modules.items()}
        state["optimizer"] = self.optimizer.state_dict()
        if self.aux_optimizers:
            state["aux_optimizers"] = {name: opt.state_dict() for name, opt in self.aux_optimizers.items()}
        if self.rng is not None:
            state["rng"] = self.rng.bit_generator.state
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        state["step"] = self.step
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore modules, optimizer, generators and step from a checkpoint dict; its ``ema`` entry
        is kept in ``saved_ema`` for the loop to resume its average from.

        Raises:
            KeyError: the dict lacks a module, an optimizer or the step.
            RuntimeError: a module's tensors do not fit (``load_state_dict``'s error).
        """
        for name, module in self.modules.items():
            module.load_state_dict(state[name])
        self.optimizer.load_state_dict(state["optimizer"])
        for name, opt in self.aux_optimizers.items():
            opt.load_state_dict(state["aux_optimizers"][name])
        if self.rng is not None:
            self.rng.bit_generator.state = state["rng"]
        if self.generator is not None:
            self.generator.set_state(state["generator"])
        self.step = state["step"]
        self.saved_ema = state.get("ema")


class TrainingLoop:
    """Schedule, resume, clip-and-step, EMA, atomic checkpoints, loss log and progress for one stage.

    Args:
        name: the stage's name, shown on the progress bar and in messages (``"graph"``).
        state: what the checkpoint holds (:class:`TrainingState`).
        params: the trained parameters, in a fixed order: clipped together, and averaged by the EMA
            (whose ``shadow_params`` follow this order).
        schedule: the learning rates; ``schedule.steps`` is the run's total step count.
        checkpoint: the checkpoint file, or None for a run that is not resumable.
        checkpoint_every: write the checkpoint every this many steps (and at the last step).
        clip_grad_norm: the largest gradient norm, or None for no clipping.
        ema_decay: keep an EMA of ``params`` with this decay, in [0, 1); 0 keeps none.
        log: the CSV loss log, appended to (a resumed run goes on in the same file), or None.
        log_header: a header row; given, the log is rewritten from the start instead.
        progress: keyword arguments of the tqdm bar (default: on stdout, redrawn every 10 s).
        time_limit_s: stop :meth:`run` after the first step that ends this many seconds after it
            began, writing the checkpoint first (a chunk of a long run; the same command resumes).
            None: no limit.

    The peak learning rate of each parameter group is its ``base_lr`` entry when it has one (a
    resumed optimizer brings back the one it was saved with), else the group's ``lr`` when the loop
    is made (before any resume, which restores the last scheduled rate).
    """

    def __init__(
        self,
        name: str,
        state: TrainingState,
        params: list[torch.nn.Parameter],
        schedule: CosineSchedule,
        *,
        checkpoint: Path | None = None,
        checkpoint_every: int = 200,
        clip_grad_norm: float | None = 1.0,
        ema_decay: float = 0.0,
        log: Path | None = None,
        log_header: list[str] | None = None,
        progress: dict | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        self.name, self.state, self.params, self.schedule = name, state, list(params), schedule
        self.checkpoint, self.checkpoint_every, self.clip_grad_norm = checkpoint, checkpoint_every, clip_grad_norm
        self.ema_decay, self.log, self.log_header, self.progress = ema_decay, log, log_header, progress
        self.base_lrs = [group["lr"] for group in state.optimizer.param_groups]
        self.time_limit_s = time_limit_s

    @property
    def step(self) -> int:
        """Steps done so far (restored by :meth:`resume`)."""
        return self.state.step

    @property
    def finished(self) -> bool:
        """Whether the run has done all of ``schedule.steps``."""
        return self.state.step >= self.schedule.steps

    def resume(self) -> bool:
        """Restore the state from the checkpoint file if there is one; returns whether there was."""
        if self.checkpoint is None or not Path(self.checkpoint).exists():
            return False
        # on the CPU first: modules and the optimizer copy onto their parameters' device, the generator's state must stay there
        self.state.load_state_dict(torch.load(self.checkpoint, map_location="cpu", weights_only=False))
        return True

    def save(self) -> None:
        """Write the checkpoint now (atomically)."""
        atomic_save(self.state.state_dict(), self.checkpoint)

    def _start_ema(self) -> None:
        from diffusers.training_utils import EMAModel

        self.state.ema = EMAModel(self.params, decay=self.ema_decay)
        if self.state.saved_ema is not None:
            self.state.ema.load_state_dict(self.state.saved_ema)
            self.state.ema.to(device=self.params[0].device)  # a checkpoint is read onto the CPU
        else:
            print(f"{self.name} stage: EMA (decay {self.ema_decay}) starts from the weights at step {self.step}", flush=True)

    def run(
        self,
        batch_loss: Callable[[int], StepLoss | torch.Tensor],
        *,
        row: Callable[[StepRecord], list] = default_row,
        after_step: Callable[[], dict[str, float]] | None = None,
    ) -> list[float]:
        """Train from the current step to ``schedule.steps``.

        Args:
            batch_loss: called with the 0-based step; draws a batch and returns its loss (a scalar
                tensor with gradients, or a :class:`StepLoss` with named terms).
            row: the log row of a finished step (default :func:`default_row`).
            after_step: called after each optimizer step; its values join the record's ``terms``
                and the progress bar (e.g. a gate's opening).

        Returns:
            The loss of every step this call ran (floats).
        """
        losses: list[float] = []
        if self.ema_decay > 0:
            self._start_ema()
        if self.finished:
            return losses
        steps = self.schedule.steps
        bar = tqdm(total=steps, initial=self.step, desc=self.name, **(self.progress or {"file": sys.stdout, "mininterval": 10}))
        mode = "w" if self.log_header is not None else "a"
        with open(self.log, mode, newline="") if self.log is not None else nullcontext() as handle:
            writer = csv.writer(handle) if handle is not None else None
            if writer is not None and self.log_header is not None:
                writer.writerow(self.log_header)
            started = time.time()
            while self.step < steps:
                out = batch_loss(self.step)
                out = out if isinstance(out, StepLoss) else StepLoss(out)
                self._update(out.loss)
                extra = after_step() if after_step is not None else {}
                record = StepRecord(
                    self.step, out.loss.item(), {**{k: _scalar(v) for k, v in out.terms.items()}, **extra},
                    self.state.optimizer.param_groups[0]["lr"], time.time() - started,
                )
                losses.append(record.loss)
                if writer is not None:
                    writer.writerow(row(record))
                bar.update(1)
                bar.set_postfix(loss=f"{record.loss:.4f}", **{k: f"{v:.3f}" for k, v in extra.items()})
                out_of_time = self.time_limit_s is not None and record.elapsed >= self.time_limit_s
                if self.checkpoint is not None and (self.step % self.checkpoint_every == 0 or self.step == steps or out_of_time):
                    if handle is not None:
                        handle.flush()
                    self.save()
                if out_of_time and self.step < steps:
                    print(f"{self.name}: time limit reached at step {self.step} of {steps}; run the same command to resume", flush=True)
                    break
        bar.close()
        return losses

    def _update(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss`` at the scheduled rate: backward, clip, step, EMA; counts the step."""
        for group, base in zip(self.state.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.schedule.lr(group.get("base_lr", base), self.step)
        self.state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm)
        self.state.optimizer.step()
        if self.state.ema is not None:
            self.state.ema.step(self.params)
        self.state.step += 1
