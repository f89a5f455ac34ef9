"""``causal_lm`` training throughput in real (non-padding) tokens per second: dynamic padding with length-grouped
batches (ours) against padding every batch to ``max_seq_length``.

Both rows train the same small Llama-shaped AdaLoRA model (random weights; hidden 384, 6 layers, 6 heads with 2
key/value heads, MLP 1024, vocabulary 32,000; every attention and MLP matrix adapted at init rank 16) on the same
examples, through the task's own pipeline: ``CausalLMDataset`` (completion-only labels) and the engine's
``make_loader``; only the batching differs. Example lengths are drawn from a log-normal distribution with median
190 tokens and log-sd 0.5, clipped to [16, 768]: an assumption meant to resemble MetaMathQA under PEFT's comparison
(4,198,051 training tokens over 20,000 examples = 210 tokens on average, recorded in huggingface/peft
``method_comparison/MetaMathQA/results/adalora--llama-3.2-3B-rank32.json``), not a measurement of the real data.
The prompt is a third of each example.

Sequence packing is not offered: packed examples would attend to each other unless the attention mask is made
block-diagonal per example (with position ids restarting per example), which the models' standard attention path does
not do; dynamic padding with length grouping already removes nearly all padding.

    python benchmarks/causal_throughput.py [--steps 8] [--batch-size 8] [--max-seq-length 768]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from adalora_scores.adapter.peft.build import build_adalora
from adalora_scores.config import TrainConfig
from adalora_scores.demo.tiny_models import decoder_tokenizer
from adalora_scores.engine.data import make_loader
from adalora_scores.tasks.causal_lm import CausalLMDataset, LMExample

WORDS = [f"w{i}" for i in range(2000)]


def examples(count: int, max_length: int, generator: torch.Generator) -> list[LMExample]:
    """Prompt/completion pairs of log-normal total length (module docstring), in words of one token each."""
    sample = torch.exp(torch.log(torch.tensor(190.0)) + 0.5 * torch.randn(count, generator=generator))
    lengths = sample.round().clamp(16, max_length).long().tolist()
    out = []
    for index, length in enumerate(lengths):
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (length - 2,), generator=generator)]
        cut = max(1, len(words) // 3)
        out.append(LMExample(f"synthetic {index}", prompt=" ".join(words[:cut]), completion=" ".join(words[cut:])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="batches per row: one epoch over batch × steps examples")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=768)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = decoder_tokenizer(WORDS, chat_template=None)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    train_config = TrainConfig(
        task="causal_lm", model="llama", init_r=16, target_r=8, budget_warmup=100, budget_final=100, mask_interval=10
    )
    model, allocator = build_adalora(LlamaForCausalLM(config), train_config, total_steps=1000, modules_to_save=())
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    # one epoch over batch × steps examples per row, all of them timed: every example is processed once by each row
    # (timing only the first batches would favour the grouped row's longest-first order)
    count = args.batch_size * args.steps
    dataset = CausalLMDataset(
        examples(count, args.max_seq_length, torch.Generator().manual_seed(0)), tokenizer, args.max_seq_length
    )
    print(
        f"Llama-shaped AdaLoRA ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        f"{len(allocator.layout.matrices)} adapted matrices), batch {args.batch_size}, max_seq_length "
        f"{args.max_seq_length}, {args.steps} timed steps per row (one epoch of {count} examples, median length "
        f"{statistics.median(dataset.lengths):.0f}), {torch.get_num_threads()} threads\n"
    )
    print("| batching | real tokens/s | processed tokens/step | padding | speed-up |")
    print("|---|---:|---:|---:|---:|")
    rates: dict[str, float] = {}
    warm = dataset.collate(dataset.features[: args.batch_size])
    model(**warm).loss.backward()  # one untimed warm-up step
    optimizer.zero_grad()
    for name, grouped in (("pad to max_seq_length", False), ("ours (dynamic + grouped)", True)):
        loader = make_loader(dataset, tokenizer, args.batch_size, shuffle=True, seed=0, group_by_length=grouped)
        real, processed, seconds = [], [], []
        for batch in loader:
            if not grouped:  # the reference: every batch padded to max_seq_length
                width = args.max_seq_length - batch["input_ids"].shape[1]
                fill = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "labels": -100}
                batch = {k: torch.nn.functional.pad(v, (0, width), value=fill[k]) for k, v in batch.items()}
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.perf_counter() - start)
            real.append(int(batch["attention_mask"].sum()))
            processed.append(batch["attention_mask"].numel())
        rates[name] = sum(real) / sum(seconds)
        padding = 1 - sum(real) / sum(processed)
        print(
            f"| {name} | {rates[name]:,.0f} | {statistics.mean(processed):,.0f} | {padding:.0%} | "
            f"{rates[name] / rates['pad to max_seq_length']:.2f}x |"
        )


if __name__ == "__main__":
    main()
