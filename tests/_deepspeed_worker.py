"""Train a tiny LLaMA AdaLoRA for a few steps under DeepSpeed ZeRO-3 (CPU, gloo), or in one plain process.

``torchrun --nproc_per_node 2 _deepspeed_worker.py OUT`` (with ``DS_ACCELERATOR=cpu``): every process wraps the
model of :func:`_fsdp2_worker.build` with ``deepspeed.initialize`` (ZeRO-3, fp32, torch AdamW,
``stage3_param_persistence_threshold: 0`` so that every adapter weight is partitioned), trains on its half of the
global batch with ``engine.backward``/``engine.step`` and PEFT's ``update_and_allocate`` after the step, and saves
``OUT/zero3-<rank>.pt``: the mask after every step, the final scores, and λ of the forward weights and of the fp32
master copy. :func:`single_run` is the same loop in one plain process on the whole global batch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _fsdp2_worker import ROWS, STEPS, build, global_batches, run  # noqa: E402

OPTIONS = {"score": "sensitivity"}
MICRO_BATCH = ROWS // 2


def zero3_config() -> dict:
    return {
        "train_micro_batch_size_per_gpu": MICRO_BATCH,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,
        "steps_per_print": 10_000,
    }


def single_run() -> dict:
    model, allocator, optimizer = build(OPTIONS)
    masks, losses = run(model, allocator, optimizer, range(1, STEPS + 1), None, 1)
    return {
        "masks": torch.stack(masks),
        "scores": allocator.last_triplet_scores.clone(),
        "losses": losses,
        "pattern": allocator.rank_pattern(),
    }


def zero3_run(rank: int, world: int) -> dict:
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_grad, safe_set_full_grad
    from transformers.integrations import HfDeepSpeedConfig

    config = zero3_config()
    model, allocator, optimizer = build(OPTIONS, backend="zero3")  # as the single process, before HfDeepSpeedConfig
    keep_alive = HfDeepSpeedConfig(config)  # as accelerate's plugin does: PEFT's regulariser gathers through it
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    values = [m.value for m in allocator.layout.matrices]
    share = ROWS // world
    masks, losses, batches = [], [], global_batches()
    for step in range(1, STEPS + 1):
        batch = {key: value[rank * share : (rank + 1) * share] for key, value in batches[step - 1].items()}
        loss = engine(**batch).loss
        engine.backward(loss)
        losses.append(loss.item())
        engine.step()
        model.base_model.update_and_allocate(step)
        masks.append(allocator.keep.clone())
    # one more step on the last batch: the pruned λ must stay zero in both copies after it
    batch = {key: value[rank * share : (rank + 1) * share] for key, value in batches[-1].items()}
    engine.backward(engine(**batch).loss)
    engine.step()
    model.base_model.update_and_allocate(STEPS)  # re-applies the frozen pattern (PEFT's final phase)
    # the NaN guard reads the optimizer's full gradients (p.grad is None here): finite, then one entry poisoned
    finite = allocator.backend.nonfinite_parameter(engine.module)
    # Q of the first matrix: its size splits evenly over the processes (safe_set_full_grad fails on an uneven split,
    # deepspeed 0.19.8, as safe_set_full_fp32_param does; see adapter/distributed/deepspeed.py)
    target = allocator.layout.matrices[0].right
    poisoned_name = next(name for name, p in engine.module.named_parameters() if p is target)
    gradient = safe_get_full_grad(target).clone()
    gradient.view(-1)[0] = float("nan")
    safe_set_full_grad(target, gradient)
    poisoned = allocator.backend.nonfinite_parameter(engine.module)
    master = [safe_get_full_fp32_param(v).reshape(-1).clone() for v in values]
    with deepspeed.zero.GatheredParameters(values):
        forward = [v.detach().reshape(-1).clone() for v in values]
    del keep_alive
    return {
        "masks": torch.stack(masks),
        "scores": allocator.last_triplet_scores.clone(),
        "losses": losses,
        "pattern": allocator.rank_pattern(),
        "access": type(allocator.layout.access).__name__,
        "partitioned": values[0].shape == (0,),
        "master": torch.cat(master),
        "forward": torch.cat(forward),
        "rank_pattern_keep": allocator.keep.clone(),
        "nonfinite": (finite, poisoned, poisoned_name),
        "grad_is_none": target.grad is None,
    }


def main(out: Path) -> None:
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    torch.save(zero3_run(rank, world), out / f"zero3-{rank}.pt")
    torch.distributed.barrier()


if __name__ == "__main__":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import faulthandler

    faulthandler.dump_traceback_later(240, exit=True)  # a hung collective fails the test, with stacks
    main(Path(sys.argv[1]))
