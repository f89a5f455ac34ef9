"""Cost of per-example gradient moments: one training step with and without the PerExampleGradients collector.

The model is the DeBERTa-v3-base-shaped AdaLoRA model of ``_shapes.py`` (random weights, 72 adapted matrices at
init rank 16, 2,655,360 adapter entries), whose q/k projections also run on the shared relative-position
embeddings (the route of ``adalora_scores.adapter.per_example.shared_inputs``). λ is set to random values so that every
gradient is non-zero (PEFT starts at λ = 0; the cost is the same).

* time: one step = forward + backward (+ ``consume()`` for the collector), measured side by side in one process,
  the two variants interleaved in alternating order after one warm-up each; the medians and their ratio, and the
  median of the per-rep ratios (each rep's two steps run back to back, so a machine whose speed drifts over minutes
  affects both alike) with its distribution-free 95% interval (order statistics of the binomial sign test);
* the collector's own computation: wall time spent inside its gradient hooks (``svd_example_gradients`` and the
  accumulation of the sums), timed in the measured steps themselves; (plain step + own) / plain step is the ratio the
  collector would give on a machine without noise, and a check on the measured one;
* noise diagnostics per variant: process CPU seconds per step (both threads; excludes time the hypervisor gave to
  other guests), minor page faults per step, and the machine's steal time (``/proc/stat``) during the steps;
* memory: each variant in its own subprocess, peak resident set size (``resource.getrusage`` max RSS) after
  two steps, and the peak above the RSS of the built model (the part a step adds). Note: max RSS covers the whole
  process, including building the model, so when building peaks higher than a step both variants show the same
  number; the last column then bounds the step's peak from above only.

    python benchmarks/per_example.py [--reps 3] [--batch-sizes 8,32] [--length 128]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from _shapes import deberta_v3_adalora
from scipy.stats import binom

from adalora_scores.adapter import per_example
from adalora_scores.adapter.peft.attach import adalora_model, find_adapted_matrices
from adalora_scores.adapter.per_example.collector import PerExampleGradients
from adalora_scores.allocation.layout import TripletLayout

VARIANTS = ("plain", "collector")
HOOK_SECONDS = [0.0]
"""Wall seconds spent inside the collector's per-example computations since the last reset."""


def timed(function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            HOOK_SECONDS[0] += time.perf_counter() - start

    return wrapper


per_example.svd_example_gradients = timed(per_example.svd_example_gradients)
PerExampleGradients._accumulate = timed(PerExampleGradients._accumulate)


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
    return {
        "input_ids": torch.randint(5, 128000, (batch_size, length), generator=generator),
        "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,), generator=generator),
    }


def steal_jiffies() -> int:
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8])


def step(model, layout, batch, variant: str) -> dict[str, float]:
    """Wall and CPU seconds, minor page faults and steal jiffies for forward + backward (+ consume) of one batch,
    and the seconds spent inside the collector's computations."""
    collector = PerExampleGradients(model, layout) if variant == "collector" else None
    if collector is not None:
        collector.discard()  # writes its sums buffer once, as a collector kept across training steps has
    HOOK_SECONDS[0] = 0.0
    faults, steal, cpu = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, steal_jiffies(), time.process_time()
    start = time.perf_counter()
    model(**batch).loss.backward()
    if collector is not None:
        collector.consume()
    elapsed = time.perf_counter() - start
    measured = {
        "wall": elapsed,
        "cpu": time.process_time() - cpu,
        "hooks": HOOK_SECONDS[0],
        "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
        "steal": steal_jiffies() - steal,
    }
    if collector is not None:
        collector.close()
    model.zero_grad(set_to_none=True)
    return measured


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def median_interval(values: list[float]) -> tuple[float, float]:
    """Distribution-free 95% interval of the median: order statistics k and n+1-k of the sign test."""
    ordered, count = sorted(values), len(values)
    k = int(binom.ppf(0.025, count, 0.5))
    if k < 1:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[count - k]


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


def memory_of_child(variant: str, batch_size: int, length: int) -> dict[str, int]:
    command = [sys.executable, __file__, "--memory-child", variant, str(batch_size), "--length", str(length)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


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
    # memory first, before this process holds a model: with glibc's trimming turned off (MALLOC_TRIM_THRESHOLD_)
    # it would keep a step's worth of freed memory while a child measures its own
    peaks = {size: {variant: memory_of_child(variant, size, args.length) for variant in VARIANTS} for size in sizes}
    model, layout = build()
    print(
        f"base-shaped DeBERTa-v3 AdaLoRA, {len(layout.matrices)} matrices, {layout.numel:,} adapter entries, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.reps} interleaved reps after 1 "
        "warm-up per variant"
    )
    tuning = {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")}
    if tuning:
        print(f"glibc malloc settings: {tuning}")
    print()
    print(
        "| batch | plain step, median s | with collector, median s | time ratio | per-rep ratios, median [95% "
        "interval] (range) | collector's own compute, s (ratio it implies) | CPU-time ratio | minor faults per "
        "step, plain → collector | steal s per step | peak RSS plain → collector MiB "
        "| step's own peak MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        batch = make_batch(size, args.length)
        runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
        for variant in VARIANTS:
            step(model, layout, batch, variant)  # warm-up
        for rep in range(args.reps):
            for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
                runs[variant].append(step(model, layout, batch, variant))
        memory = peaks[size]
        plain, collector = median_of(runs["plain"], "wall"), median_of(runs["collector"], "wall")
        ratios = [c["wall"] / p["wall"] for p, c in zip(runs["plain"], runs["collector"], strict=True)]
        low, high = median_interval(ratios)
        own = median_of(runs["collector"], "hooks")
        cpu_ratio = median_of(runs["collector"], "cpu") / median_of(runs["plain"], "cpu")
        steal = statistics.mean(run["steal"] for v in VARIANTS for run in runs[v]) / os.sysconf("SC_CLK_TCK")
        peak = {v: memory[v]["peak_kib"] / 1024 for v in VARIANTS}
        own_peak = {v: (memory[v]["peak_kib"] - memory[v]["built_kib"]) / 1024 for v in VARIANTS}
        print(
            f"| {size}×{args.length} | {plain:.2f} | {collector:.2f} | {collector / plain:.3f} | "
            f"{statistics.median(ratios):.3f} [{low:.2f}–{high:.2f}] ({min(ratios):.2f}–{max(ratios):.2f}) | "
            f"{own:.2f} ({(plain + own) / plain:.3f}) | {cpu_ratio:.3f} | "
            f"{median_of(runs['plain'], 'faults'):,.0f} → {median_of(runs['collector'], 'faults'):,.0f} | "
            f"{steal:.2f} | "
            f"{peak['plain']:,.0f} → {peak['collector']:,.0f} | "
            f"{own_peak['plain']:,.0f} → {own_peak['collector']:,.0f} |",
            flush=True,
        )
        raw = {v: [round(run["wall"], 2) for run in runs[v]] for v in VARIANTS}
        print(f"<!-- raw wall times {size}: plain {raw['plain']}, collector {raw['collector']} -->", flush=True)


if __name__ == "__main__":
    main()
