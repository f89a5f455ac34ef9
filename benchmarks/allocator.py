"""Time one allocation step (statistics update + masking) of PEFT's RankAllocator and of every registered score.

The model is DeBERTa-v3-base shaped (random weights: 12 layers, hidden 768, intermediate 3072), with AdaLoRA on
q, k, v, attention-output, intermediate and output of every layer: 72 matrices at init rank 16. All allocators see
the same gradients and run interleaved in rotating order, so they share the machine's noise; we report medians and
the ratio to PEFT measured in this one run. Finally one full training step (forward, backward, AdamW) at batch 8 ×
128 tokens is timed to put the bookkeeping in proportion.

    python benchmarks/allocator.py [--reps 40] [--train-steps 3] [--small]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _shapes import deberta_v3_adalora
from peft.tuners.adalora.layer import RankAllocator

import adalora_scores
from adalora_scores.scores import GradientMoments


def build(small: bool):
    return deberta_v3_adalora(small, total_step=10_000, tinit=0, tfinal=0, deltaT=1)


def fill_gradients(model) -> None:
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.grad = torch.randn(parameter.shape, generator=generator) * 1e-3
            if "lora_E" in name:
                parameter.data.normal_(0, 0.05, generator=generator)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="hidden 384 instead of 768 (a quicker check)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build(args.small)
    inner = model.base_model
    fill_gradients(model)
    config = inner.peft_config["default"]

    peft_allocator = RankAllocator(inner.model, config, "default")
    allocators = {"peft RankAllocator": peft_allocator}
    for name in adalora_scores.list_scores():
        allocators[name] = adalora_scores.attach(model, score=name)  # closes the previous one's hooks
    for allocator in allocators.values():  # no forward here: per-example scores get the same synthetic moments
        if getattr(allocator, "needs_moments", False):
            allocator.close_per_example()
            allocator.per_example = SyntheticMoments(allocator.layout)
    matrices = len(allocators["sensitivity"].layout.matrices)
    print(
        f"model: {'small' if args.small else 'base'}-shaped DeBERTa-v3, {matrices} adapted matrices, init rank 16, "
        f"{allocators['sensitivity'].layout.numel:,} adapter entries; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    masked, update_only = {k: [] for k in allocators}, {k: [] for k in allocators}
    names = list(allocators)
    step = 100  # inside the budgeting phase: deltaT = 1 masks at every step
    for rep in range(args.reps + 2):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            allocator = allocators[name]
            with torch.no_grad():
                t_mask = timed(lambda a=allocator: a.update_and_allocate(inner.model, step))
                t_update = timed(lambda a=allocator: _update_only(a, inner.model))
            if rep >= 2:  # warm-up
                masked[name].append(t_mask)
                update_only[name].append(t_update)

    train_ms = time_training_step(model, args.train_steps)
    peft_median = statistics.median(masked["peft RankAllocator"])
    print(
        f"\none full training step (batch 8 x 128, forward + backward + AdamW), median of {args.train_steps}: "
        f"{train_ms:,.0f} ms\n"
    )
    print(
        "| allocator | update + mask, median ms | p10 ms | ratio to PEFT | % of a training step "
        "| update only, median ms | statistics buffers |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        median = statistics.median(masked[name])
        p10 = statistics.quantiles(masked[name], n=10)[0]
        buffers = 3 if name.startswith("peft") else len(allocators[name].score.statistics)
        print(
            f"| {name} | {median:.2f} | {p10:.2f} | {median / peft_median:.2f} | {100 * median / train_ms:.2f} "
            f"| {statistics.median(update_only[name]):.2f} | {buffers} x adapter |"
        )


class SyntheticMoments:
    """Stands in for the per-example hooks: fixed moments (m1 = the gradient, m2 = 2·m1² + 1e-8), 32 examples."""

    def __init__(self, layout) -> None:
        mean = layout.gather_gradients().clone()
        self.moments = GradientMoments(mean, 2 * mean.square() + 1e-8, 32)

    def consume(self) -> GradientMoments:
        return self.moments

    def close(self) -> None:
        pass


def _update_only(allocator, model) -> None:
    if isinstance(allocator, RankAllocator):
        allocator.update_ipt(model)
    else:
        allocator.update_scores(allocator.per_example.consume() if allocator.per_example is not None else None)


def time_training_step(model, steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    batch = {
        "input_ids": torch.randint(0, 128100, (8, 128), generator=generator),
        "attention_mask": torch.ones(8, 128, dtype=torch.long),
        "labels": torch.randint(0, 2, (8,)),
    }
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


if __name__ == "__main__":
    main()
