"""The optimizer-step loop, with its guards and checkpoints.

Order inside one optimizer step (the allocation must see the final gradient of this step, once):

1. micro-batches: forward (PEFT adds the orthogonal regulariser), backward, accumulated by accelerate;
2. unscale (fp16 GradScaler) and clip to ``max_grad_norm``: scores see the **unscaled, clipped** gradient, as in
   the original AdaLoRA trainer and with ``transformers.Trainer``;
3. non-finite guard (``nonfinite``: stop, or skip the whole step); under fp16 the GradScaler's own skip is honoured;
4. ``optimizer.step()``, ``scheduler.step()``, then ``update_and_allocate(step)``, before ``zero_grad()``;
5. with several processes, every process checks it holds the same mask (gradients are all-reduced before step 2,
   so they must agree; a mismatch stops the run);
6. every ``checkpoint_every`` steps, an atomic checkpoint of full tensors (gathered from every process by the
   model's backend, :mod:`adalora_scores.adapter.distributed`), written by the main process.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator

from adalora_scores.adapter.peft.build import AdaptedModel
from adalora_scores.config import TrainConfig
from adalora_scores.engine.checkpoint import Progress, capture_rng, restore_rng, save_checkpoint
from adalora_scores.engine.tracking import allocation_scalars, log_step
from adalora_scores.runs.files import TRIPLET_SCORES_FILE
from adalora_scores.runs.writer import RunFolder

__all__ = ["NonFiniteError", "Session", "checkpoint_state", "restore_state", "run_steps"]


class NonFiniteError(RuntimeError):
    """A NaN or Inf loss or gradient with ``nonfinite="stop"``."""


@dataclass
class Session:
    config: TrainConfig
    accelerator: Accelerator
    model: Any
    optimizer: Any
    scheduler: Any
    train_loader: Any
    adapted: AdaptedModel
    folder: RunFolder
    total_steps: int

    @property
    def checkpoint_every(self) -> int:
        """Optimizer steps between checkpoints (0: none); the config's None means every 10% of the run."""
        every = self.config.checkpoint_every
        return max(1, self.total_steps // 10) if every is None else every

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def torch_optimizer(self) -> torch.optim.Optimizer:
        """The torch optimizer inside accelerate's ``AcceleratedOptimizer``."""
        return getattr(self.optimizer, "optimizer", self.optimizer)


def checkpoint_state(session: Session, progress: Progress) -> dict[str, Any]:
    """Everything to resume exactly, with full tensors. Every process calls it (a collective under FSDP2); the
    weights and optimizer state are complete on the main process only, which writes the checkpoint."""
    return {
        "progress": progress.to_dict(),
        **session.adapted.backend.training_state(session.unwrapped, session.torch_optimizer),  # "trainable", ...
        "scheduler": session.scheduler.state_dict(),
        "allocator": session.adapted.allocator_state(),
        "rng": capture_rng(),
    }


def restore_state(session: Session, state: dict[str, Any]) -> Progress:
    """Load a checkpoint into the prepared model, optimizer, scheduler and allocator (every process; under FSDP2
    each keeps its rows of the full tensors)."""
    session.adapted.backend.load_training_state(session.unwrapped, session.torch_optimizer, state)
    session.scheduler.load_state_dict(state["scheduler"])
    allocator = state["allocator"]
    if allocator is not None and "peft_rank_pattern" in state:  # older checkpoints keep it beside the allocator
        allocator = {**allocator, "peft_rank_pattern": state["peft_rank_pattern"]}
    session.adapted.load_allocator_state(allocator)
    return Progress(**state["progress"])  # the RNG is restored by run_steps, once the data iterator exists


def _check_same_allocation(accelerator: Accelerator, allocator, step: int) -> None:
    keep = allocator.keep.float()
    fingerprint = torch.stack([keep.sum(), (keep * torch.arange(1, keep.numel() + 1, device=keep.device)).sum()])
    gathered = accelerator.gather(fingerprint[None].to(accelerator.device)).view(-1, 2)
    if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
        raise RuntimeError(
            f"step {step}: the processes hold different rank masks ({gathered.tolist()}); their gradients or scores "
            "diverged. Check that every process runs the same code and data."
        )


def _unscale_and_clip(session: Session) -> None:
    accelerator, config = session.accelerator, session.config
    if config.max_grad_norm > 0:
        accelerator.clip_grad_norm_(session.model.parameters(), config.max_grad_norm)  # unscales fp16 first
    elif accelerator.scaler is not None:
        accelerator.unscale_gradients()


def run_steps(session: Session, progress: Progress, bar=None, rng_state: dict[str, Any] | None = None) -> Progress:
    """Train from ``progress`` to ``total_steps`` optimizer steps; returns the final progress.

    ``rng_state`` (resume) is restored right after the data iterator is created: creating a DataLoader iterator
    draws from the global torch RNG, so restoring earlier would shift every later dropout mask by one draw.
    """
    config, accelerator, model = session.config, session.accelerator, session.model
    allocator = session.adapted.allocator
    accumulation = config.gradient_accumulation_steps
    model.train()  # from_pretrained returns the model in eval mode: without this, dropout would be off
    while progress.step < session.total_steps:
        loader = session.train_loader
        loader.set_epoch(progress.epoch)
        if progress.batch_in_epoch:
            loader = accelerator.skip_first_batches(loader, progress.batch_in_epoch)
            accelerator.step = progress.batch_in_epoch  # accelerate's accumulation counter, as if never stopped
        batches = iter(loader)
        if rng_state is not None:
            restore_rng(rng_state)
            rng_state = None
        for batch in batches:
            progress.batch_in_epoch += 1
            with accelerator.accumulate(model):
                session.adapted.before_micro_batch(accelerator.scaler)  # the loss scale, for per-example hooks
                loss = model(**batch).loss  # includes PEFT's orthogonal regulariser
                accelerator.backward(loss)
                progress.losses.append(loss.detach().float().item())
                if accelerator.sync_gradients:
                    _optimizer_step(session, progress, allocator, accumulation, bar)
                session.optimizer.zero_grad()
            if progress.step >= session.total_steps:
                break
        else:
            progress.epoch += 1
            progress.batch_in_epoch = 0
    return progress


def _optimizer_step(session: Session, progress: Progress, allocator, accumulation: int, bar) -> None:
    config, accelerator = session.config, session.accelerator
    window = progress.losses[-accumulation:]
    _unscale_and_clip(session)
    if accelerator.scaler is None:
        bad = session.adapted.backend.nonfinite_parameter(session.model)  # the same answer on every process
        if bad is not None or not all(math.isfinite(v) for v in window):
            where = f"gradient of {bad}" if bad else "loss"
            message = f"step {progress.step + 1}: non-finite {where} (loss {window})"
            if config.nonfinite == "stop":
                raise NonFiniteError(
                    f"{message}. Lower the learning rate or check the data; nonfinite=skip skips such steps instead."
                )
            warnings.warn(f"{message}: step skipped (no optimizer, scheduler or allocator update).", stacklevel=2)
            progress.skipped_steps += 1
            session.adapted.discard_step()
            return
    session.optimizer.step()
    if accelerator.optimizer_step_was_skipped:  # fp16 overflow: the GradScaler skipped the update
        progress.skipped_steps += 1
        session.adapted.discard_step()
        return
    session.scheduler.step()  # once per optimizer step, whatever the number of processes
    progress.step += 1
    session.adapted.allocate(progress.step)  # after optimizer.step(), before zero_grad()
    tracked = {}
    if (record := session.adapted.allocation_record(progress.step)) is not None:
        session.folder.log_allocation(record)
        tracked = allocation_scalars(session.adapted.ranks(), session.adapted.churn)
    if (scores := session.adapted.final_triplet_scores(progress.step)) is not None:
        session.folder.write_json(TRIPLET_SCORES_FILE, scores)
    if allocator is not None:
        if accelerator.num_processes > 1:
            _check_same_allocation(accelerator, allocator, progress.step)
    budget = session.adapted.budget(progress.step)
    loss = sum(window) / len(window)
    if accelerator.num_processes > 1:  # log the loss of the global batch, not of this process's share
        loss = accelerator.reduce(torch.tensor([loss], device=accelerator.device), reduction="mean").item()
    lr = session.scheduler.get_last_lr()[0]
    session.folder.log({"step": progress.step, "loss": loss, "lr": lr, "budget": budget})
    scalars = {"train/loss": loss, "train/learning_rate": lr, "train/budget": budget, **tracked}
    log_step(accelerator, config, scalars, progress.step)
    if bar is not None:
        bar.update(1)
        if progress.step % config.log_every == 0:
            bar.set_postfix(loss=f"{loss:.4f}", budget=budget)
    every = session.checkpoint_every
    if every and progress.step % every == 0 and progress.step < session.total_steps:
        state = checkpoint_state(session, progress)
        if accelerator.is_main_process:
            save_checkpoint(session.folder.path, state)
        accelerator.wait_for_everyone()
