"""Train a tiny LLaMA AdaLoRA for a few steps, in one process or as one of 2 gloo processes under FSDP2.

``python _fsdp2_worker.py OUT`` (one process) or ``torchrun --nproc_per_node 2 _fsdp2_worker.py OUT``: every
process runs every case of :data:`CASES` and saves ``OUT/<case>-<rank>.pt`` (one process: rank ``single``), then
:func:`engine_case` (the engine's save and checkpoint functions). Under FSDP2 each decoder layer and the root are
wrapped with ``fully_shard`` after ``build_adalora`` (as accelerate does), and process p trains on its half of the
global batch; the single process trains on the whole global batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from adalora_scores.adapter.peft.build import AdaptedModel, build_adalora
from adalora_scores.config import TrainConfig
from adalora_scores.demo.tiny_models import tiny_config, tiny_model
from adalora_scores.engine.adapter import adapter_spec

VOCABULARY = 64
STEPS = 8
ROWS = 4  # global batch; 2 rows per process
LENGTH = 10
CASES = {  # name → TrainConfig options
    "sensitivity": {"score": "sensitivity"},
    "fisher_per_example": {"score": "fisher_per_example"},
    "sensitivity_task_gradient": {"score": "sensitivity", "task_gradient_only": True},
}


def global_batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(7)
    batches = []
    for _ in range(STEPS):
        input_ids = torch.randint(2, VOCABULARY, (ROWS, LENGTH), generator=generator)
        batches.append({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids})
    return batches


def full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def build(options: dict, mesh=None, backend: str | None = None):
    """The PEFT model (sharded on ``mesh``), its allocator and an AdamW optimizer, drawn identically every time.
    The loop wraps the model itself (no accelerate), so it names the backend: ``fsdp2`` with a mesh."""
    # init_r=3 shards λ unevenly over 2 processes (2 rows and 1 row)
    config = TrainConfig(
        task="causal",
        init_r=3,
        target_r=1,
        budget_warmup=2,
        budget_final=3,
        mask_interval=1,
        lora_alpha=6,
        orth_reg_weight=0.1,
        **options,
    )
    torch.manual_seed(1)
    model, allocator = build_adalora(
        tiny_model(tiny_config("llama", vocab_size=VOCABULARY), head="causal-lm"),
        adapter_spec(config, STEPS),
        backend="fsdp2" if mesh is not None else backend,
    )
    if mesh is not None:
        from torch.distributed.fsdp import fully_shard

        for layer in model.base_model.model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    return model, allocator, optimizer


def run(model, allocator, optimizer, steps: range, rank: int | None, world: int) -> tuple[list, list]:
    """Optimizer steps ``steps`` of the documented loop; each step's mask and loss."""
    share = ROWS // world
    rows = slice(0, ROWS) if rank is None else slice(rank * share, (rank + 1) * share)
    masks, losses = [], []
    batches = global_batches()
    for step in steps:
        loss = model(**{key: value[rows] for key, value in batches[step - 1].items()}).loss
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
        masks.append(allocator.keep.clone())
    return masks, losses


def train_case(options: dict, rank: int | None, world: int, mesh=None) -> dict:
    """The documented loop; returns every step's mask, the final triplet scores and the final λ."""
    model, allocator, optimizer = build(options, mesh)
    masks, losses = run(model, allocator, optimizer, range(1, STEPS + 1), rank, world)
    layout = allocator.layout
    return {
        "masks": torch.stack(masks),
        "scores": allocator.last_triplet_scores.clone(),
        "values": torch.cat([full(m.value.detach()).view(-1) for m in layout.matrices]),
        "rank_pattern": model.peft_config["default"].rank_pattern,
        "losses": losses,
        "sharded": type(layout.matrices[0].value).__name__,
    }


ENGINE_OPTIONS = {"score": "sensitivity"}
CHECKPOINT_AT = 4  # before the final allocation (step 5): the checkpoint holds live score statistics


def trainable(model) -> dict[str, torch.Tensor]:
    return {name: full(p.detach()).clone() for name, p in model.named_parameters() if p.requires_grad}


def engine_case(out: Path, rank: int | None, world: int, mesh=None) -> dict:
    """The engine's run-folder save and checkpoint/resume, through the functions the engine calls.

    * save: train :data:`STEPS` steps, gather with the backend's ``trainable_state`` on every process, and the writer
      (process 0) saves ``OUT/adapter-<tag>`` with ``AdaptedModel.save(..., state_dict=...)`` (as ``engine/train.py``);
    * resume: train :data:`CHECKPOINT_AT` steps, ``training_state`` and the allocator state on every process, the
      writer saves ``OUT/checkpoint-<tag>.pt`` (as ``engine/loop.py``); every process reads it into a freshly built
      (and sharded) model with ``load_training_state`` and the allocator state, and trains to :data:`STEPS`.
    """
    tag, writer = ("single", True) if rank is None else ("fsdp2", rank == 0)
    barrier = (lambda: None) if rank is None else torch.distributed.barrier
    model, allocator, optimizer = build(ENGINE_OPTIONS, mesh)
    masks, _ = run(model, allocator, optimizer, range(1, STEPS + 1), rank, world)
    adapted = AdaptedModel(model, allocator, {}, backend=allocator.backend)
    state = adapted.backend.trainable_state(model)
    if writer:
        adapted.save(out / f"adapter-{tag}", model, state_dict=state)
    barrier()

    model, allocator, optimizer = build(ENGINE_OPTIONS, mesh)
    resumed, _ = run(model, allocator, optimizer, range(1, CHECKPOINT_AT + 1), rank, world)
    allocator_state = AdaptedModel(model, allocator, {}).allocator_state()
    checkpoint = {**allocator.backend.training_state(model, optimizer), "allocator": allocator_state}
    if writer:
        torch.save(checkpoint, out / f"checkpoint-{tag}.pt")
    barrier()
    model, allocator, optimizer = build(ENGINE_OPTIONS, mesh)
    checkpoint = torch.load(out / f"checkpoint-{tag}.pt", weights_only=True)
    allocator.backend.load_training_state(model, optimizer, checkpoint)
    AdaptedModel(model, allocator, {}).load_allocator_state(checkpoint["allocator"])
    rest, _ = run(model, allocator, optimizer, range(CHECKPOINT_AT + 1, STEPS + 1), rank, world)
    return {
        "masks": torch.stack(masks),
        "empty": [name for name, row in adapted.allocator.rank_pattern().items() if not any(row)],
        "trainable": trainable(adapted.model),
        "resumed_masks": torch.stack(resumed + rest),
        "resumed_trainable": trainable(model),
        "resumed_sharded": type(allocator.layout.matrices[0].value).__name__,
        "checkpoint_sharded": any(type(v).__name__ == "DTensor" for v in checkpoint["trainable"].values()),
    }


def nonfinite_case(rank: int | None, world: int, mesh=None) -> dict:
    """The NaN guard's answers: after one backward, with finite gradients, then with a NaN written into one entry of
    one gradient on the last process only (under FSDP2 into its own shard: the other processes' rows stay finite)."""
    model, allocator, _ = build(ENGINE_OPTIONS, mesh)
    batch = global_batches()[0]
    model(**batch).loss.backward()
    finite = allocator.backend.nonfinite_parameter(model)
    name, parameter = next((n, p) for n, p in model.named_parameters() if "lora_E" in n)
    if rank is None or rank == world - 1:
        local = parameter.grad.to_local() if hasattr(parameter.grad, "to_local") else parameter.grad
        local.view(-1)[0] = float("nan")
    return {"finite": finite, "poisoned": allocator.backend.nonfinite_parameter(model), "name": name}


def main(out: Path) -> None:
    if "RANK" not in __import__("os").environ:
        for name, options in CASES.items():
            torch.save(train_case(options, None, 1), out / f"{name}-single.pt")
        torch.save(engine_case(out, None, 1), out / "engine-single.pt")
        torch.save(nonfinite_case(None, 1), out / "nonfinite-single.pt")
        return
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    for name, options in CASES.items():
        torch.save(train_case(options, rank, world, mesh), out / f"{name}-{rank}.pt")
    torch.save(engine_case(out, rank, world, mesh), out / f"engine-{rank}.pt")
    torch.save(nonfinite_case(rank, world, mesh), out / f"nonfinite-{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
