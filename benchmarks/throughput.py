"""Training throughput in real (non-padding) tokens per second: our pipeline against the original AdaLoRA recipe.

Both sides train the same DeBERTa-v3-shaped AdaLoRA model (random weights, q/k/v/o/f1/f2 adapted, init rank 16) on
the same examples with the same batch size; they differ only in batching:

* reference: the original AdaLoRA GLUE scripts pad every batch to ``max_seq_length`` (``--pad_to_max_length``;
  128 for SST-2, 320 for MRPC and RTE);
* ours: dynamic padding to the longest example of the batch, with length-grouped batches (``group_by_length``).

Example lengths are drawn from log-normal distributions whose median and spread we set to approximate each task's
DeBERTa-v3 token lengths (an assumption stated here, not a measurement of the real data: SST-2 single sentences
median ≈ 22 tokens, MRPC pairs ≈ 50, RTE pairs ≈ 60 with a long tail), clipped to ``max_seq_length``. The model's
achieved FLOP/s (4 × non-embedding parameters × processed tokens per step: forward plus input-gradient backward of
the frozen weights, an estimate that ignores attention's T² terms) is set against the machine's measured fp32
matmul FLOP/s.

    python benchmarks/throughput.py [--small] [--steps 3] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _shapes import deberta_v3_adalora

from adalora_scores.engine.data import LengthGroupedSampler

TASKS = {"sst2": (22, 0.45, 128), "mrpc": (50, 0.3, 320), "rte": (60, 0.55, 320)}  # median, log-sd, max length


def build(small: bool):
    model = deberta_v3_adalora(small, total_step=1000, tinit=100, tfinal=100, deltaT=10)
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    return model, non_embedding


def lengths_for(task: str, count: int, generator: torch.Generator) -> list[int]:
    median, spread, max_length = TASKS[task]
    sample = torch.exp(torch.log(torch.tensor(float(median))) + spread * torch.randn(count, generator=generator))
    return sample.round().clamp(8, max_length).long().tolist()


def batches(lengths: list[int], batch_size: int, padded_to: int | None, seed: int):
    order = list(LengthGroupedSampler(lengths, batch_size, seed)) if padded_to is None else list(range(len(lengths)))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        chunk = [lengths[i] for i in order[start : start + batch_size]]
        width = padded_to or max(chunk)
        mask = torch.zeros(batch_size, width, dtype=torch.long)
        for row, length in enumerate(chunk):
            mask[row, :length] = 1
        yield {
            "input_ids": torch.randint(5, 128000, (batch_size, width)) * mask,
            "attention_mask": mask,
            "labels": torch.randint(0, 2, (batch_size,)),
        }


def matmul_flops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="hidden 384 instead of 768")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per configuration (after 1 warm-up)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, non_embedding = build(args.small)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    peak = matmul_flops()
    print(
        f"{'small' if args.small else 'base'}-shaped DeBERTa-v3 AdaLoRA, batch {args.batch_size}, "
        f"{args.steps} measured steps per row; measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(
        "| task | batching | real tokens/s | processed tokens/step | padding | model GFLOP/s | % of matmul peak "
        "| speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    generator = torch.Generator().manual_seed(0)
    for task, (_, _, max_length) in TASKS.items():
        lengths = lengths_for(task, args.batch_size * 50 * 2, generator)
        rates = {}
        for name, padded_to in (("reference (pad to max)", max_length), ("ours (dynamic + grouped)", None)):
            real, processed, seconds = [], [], []
            for index, batch in enumerate(batches(lengths, args.batch_size, padded_to, seed=0)):
                if index > args.steps:
                    break
                start = time.perf_counter()
                model(**batch).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                if index:  # the first step is a warm-up
                    seconds.append(time.perf_counter() - start)
                    real.append(int(batch["attention_mask"].sum()))
                    processed.append(batch["attention_mask"].numel())
            rate = sum(real) / sum(seconds)
            rates[name] = rate
            flops = 4 * non_embedding * sum(processed) / sum(seconds)
            padding = 1 - sum(real) / sum(processed)
            speedup = rate / rates["reference (pad to max)"]
            print(
                f"| {task} | {name} | {rate:,.0f} | {statistics.mean(processed):,.0f} | {padding:.0%} "
                f"| {flops / 1e9:.1f} | {100 * flops / peak:.0f}% | {speedup:.2f}x |"
            )


if __name__ == "__main__":
    main()
