"""A self-contained run of the core API: every registered score on the same tiny model and data.

It needs no network and no downloads: the model is a small random BERT and the task is synthetic (the label says
whether any of the first six tokens has an id below 8, so it needs attention over positions, not a single
keyword). It is a demonstration of the workflow, not a result: it prints where each score puts its budget and how
much the scores agree, after the same PEFT training loop.
"""

from __future__ import annotations

import time

import torch
from peft import AdaLoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

import adalora_scores
from adalora_scores.adapter.targets import target_modules_for

MODULE_KINDS = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "o",
    "intermediate.dense": "f1",
    "output.dense": "f2",
}


def _model(seed: int, total_step: int):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=32,
        num_labels=2,
    )
    adalora = AdaLoraConfig(
        init_r=8,
        target_r=4,
        total_step=total_step,
        tinit=total_step // 10,
        tfinal=total_step // 5,
        deltaT=5,
        lora_alpha=16,
        orth_reg_weight=0.1,
        target_modules=target_modules_for("bert"),
        modules_to_save=["classifier", "pooler"],
    )
    return get_peft_model(BertForSequenceClassification(config), adalora)


def _batch(generator: torch.Generator, size: int = 32, length: int = 16) -> dict[str, torch.Tensor]:
    input_ids = torch.randint(1, 64, (size, length), generator=generator)
    labels = (input_ids[:, :6] < 8).any(dim=1).long()  # about 56% positive
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def run_score(score: str, steps: int, seed: int) -> tuple[dict[str, int], float, float]:
    """Train with ``score``; return the final ranks, held-out accuracy and seconds."""
    model = _model(seed, steps)
    adalora_scores.attach(model, score=score)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        model(**_batch(generator)).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    seconds = time.perf_counter() - start
    model.eval()
    test = _batch(torch.Generator().manual_seed(10_000), size=512)
    with torch.no_grad():
        accuracy = (model(**test).logits.argmax(-1) == test["labels"]).float().mean().item()
    return model.base_model.rankallocator.ranks(), accuracy, seconds


def _kind(name: str) -> str:
    return next(kind for key, kind in MODULE_KINDS.items() if f".{key}." in name)


def main(steps: int = 150, seed: int = 0) -> dict[str, dict[str, int]]:
    print(__doc__.strip().splitlines()[0])
    print(f"tiny random BERT (4 layers, 24 adapted matrices, rank 8 -> 4), synthetic task, {steps} steps\n")
    results = {}
    header = "| score | held-out acc | " + " | ".join(MODULE_KINDS.values()) + " | seconds |"
    print(header + "\n|" + "---|" * (len(MODULE_KINDS) + 3))
    for score in adalora_scores.list_scores():
        ranks, accuracy, seconds = run_score(score, steps, seed)
        results[score] = ranks
        per_kind = {kind: 0 for kind in MODULE_KINDS.values()}
        for name, rank in ranks.items():
            per_kind[_kind(name)] += rank
        print(f"| {score} | {accuracy:.3f} | " + " | ".join(str(v) for v in per_kind.values()) + f" | {seconds:.1f} |")
    print(
        "\nkept triplets per module kind (summed over layers). Agreement of final rank counts per matrix "
        "(fraction of matrices with the same kept rank):"
    )
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = sum(results[a][m] == results[b][m] for m in results[a]) / len(results[a])
            print(f"  {a} vs {b}: {same:.2f}")
    print("\nThis is a demonstration of the workflow on a synthetic task, not a result.")
    return results


if __name__ == "__main__":
    main()
