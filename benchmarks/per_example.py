"""Cost of per-example gradient moments: one training step with and without the PerExampleGradients collector.

The model is the DeBERTa-v3-base-shaped AdaLoRA model of ``_shapes.py`` (random weights, 72 adapted matrices at
init rank 16, 2,655,360 adapter entries), whose q/k projections also run on the shared relative-position
embeddings (the route of ``adalora_scores.adapter.shared_inputs``). λ is set to random values so that every
gradient is non-zero (PEFT starts at λ = 0; the cost is the same).

* time: one step = forward + backward (+ ``consume()`` for the collector), measured side by side in one process,
  the two variants interleaved in alternating order after one warm-up each; the medians and their ratio, and the
  median of the per-rep ratios (each rep's two steps run back to back, so a machine whose speed drifts over minutes
  affects both alike);
* memory: each variant in its own subprocess, peak resident set size (``resource.getrusage`` max RSS) after
  two steps, and the peak above the RSS of the built model (the part a step adds). Note: max RSS covers the whole
  process, including building the model, so when building peaks higher than a step both variants show the same
  number; the last column then bounds the step's peak from above only.

    python benchmarks/per_example.py [--reps 3] [--batch-sizes 8,32] [--length 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from _shapes import deberta_v3_adalora

from adalora_scores.adapter.peft import adalora_model, find_adapted_matrices
from adalora_scores.adapter.per_example import PerExampleGradients
from adalora_scores.allocation.layout import TripletLayout

VARIANTS = ("plain", "collector")


def build():
    torch.manual_seed(0)
    model = deberta_v3_adalora(False, total_step=1000, tinit=100, tfinal=100, deltaT=10).train()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_E" in name:
                parameter.normal_()
    return model, TripletLayout(find_adapted_matrices(adalora_model(model), "default"))


def make_batch(batch_size: int, length: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch_size)
    return {"input_ids": torch.randint(5, 128000, (batch_size, length), generator=generator),
            "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (batch_size,), generator=generator)}  # fmt: skip


def step(model, layout, batch, variant: str) -> float:
    """Seconds for forward + backward (+ consume) of one batch."""
    collector = PerExampleGradients(model, layout) if variant == "collector" else None
    start = time.perf_counter()
    model(**batch).loss.backward()
    if collector is not None:
        collector.consume()
    elapsed = time.perf_counter() - start
    if collector is not None:
        collector.close()
    model.zero_grad(set_to_none=True)
    return elapsed


def resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def memory_child(variant: str, batch_size: int, length: int) -> None:
    model, layout = build()
    batch = make_batch(batch_size, length)
    built = resident_kib()
    for _ in range(2):
        step(model, layout, batch, variant)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": peak, "built_kib": built}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="measured steps per variant and batch size")
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--memory-child", nargs=2, metavar=("VARIANT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.length)
        return
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    model, layout = build()
    print(f"base-shaped DeBERTa-v3 AdaLoRA, {len(layout.matrices)} matrices, {layout.numel:,} adapter entries, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.reps} interleaved reps after 1 "
          "warm-up per variant")  # fmt: skip
    print()
    print("| batch | plain step, median s | with collector, median s | time ratio | per-rep ratios, median (range) "
          "| plain peak RSS MiB | collector peak RSS MiB | RSS ratio "
          "| step's own peak, plain → collector MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        batch = make_batch(size, args.length)
        times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for variant in VARIANTS:
            step(model, layout, batch, variant)  # warm-up
        for rep in range(args.reps):
            for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
                times[variant].append(step(model, layout, batch, variant))
        memory = {}
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--memory-child", variant, str(size), "--length", str(args.length)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            memory[variant] = json.loads(output.strip().splitlines()[-1])
        plain, collector = (statistics.median(times[v]) for v in VARIANTS)
        ratios = [c / p for p, c in zip(times["plain"], times["collector"], strict=True)]
        peak = {v: memory[v]["peak_kib"] / 1024 for v in VARIANTS}
        own = {v: (memory[v]["peak_kib"] - memory[v]["built_kib"]) / 1024 for v in VARIANTS}
        print(f"| {size}×{args.length} | {plain:.2f} | {collector:.2f} | {collector / plain:.3f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.2f}–{max(ratios):.2f}) | "
              f"{peak['plain']:,.0f} | {peak['collector']:,.0f} | {peak['collector'] / peak['plain']:.3f} | "
              f"{own['plain']:,.0f} → {own['collector']:,.0f} |", flush=True)  # fmt: skip
        print(f"<!-- raw times {size}: plain {[round(t, 2) for t in times['plain']]}, collector "
              f"{[round(t, 2) for t in times['collector']]} -->", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
