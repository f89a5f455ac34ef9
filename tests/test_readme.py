"""The README's Python examples run as written (the Hub model name swapped for a tiny local DeBERTa-v2)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from adalora_scores.scores import base as score_base

README = Path(__file__).parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_api_example_runs(tmp_path, monkeypatch):
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    example = next(block for block in _python_blocks() if "adalora_scores.attach(" in block)
    folder = tmp_path / "deberta"
    config = DebertaV2Config(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=32, relative_attention=True,
                             position_buckets=16, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                             pooler_hidden_size=32, num_labels=2)  # fmt: skip
    DebertaV2ForSequenceClassification(config).save_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    loader = [
        {"input_ids": torch.randint(4, 64, (4, 12), generator=generator), "labels": torch.tensor([0, 1, 0, 1])}
        for _ in range(40)
    ]
    monkeypatch.chdir(tmp_path)
    namespace = {"loader": loader}
    exec(compile(example.replace("microsoft/deberta-v3-base", str(folder)), "README.md", "exec"), namespace)
    allocator = namespace["allocator"]
    assert len(allocator.layout.matrices) == 12  # q, k, v, o, f1, f2 × 2 layers
    assert sum(allocator.ranks().values()) < allocator.initial_budget  # pruning started after tinit = 35
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_readme_custom_score_example_registers_and_trains():
    example = next(block for block in _python_blocks() if "@register_score" in block)
    namespace: dict = {}
    try:
        exec(compile(example, "README.md", "exec"), namespace)
        from _tiny import batches, tiny_adalora

        import adalora_scores

        model = tiny_adalora(total_step=12, tinit=2, tfinal=4, deltaT=1)
        allocator = adalora_scores.attach(model, score="abs_grad")
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for step, batch in enumerate(batches(12), start=1):
            model(**batch).loss.backward()
            optimizer.step()
            model.base_model.update_and_allocate(step)
            optimizer.zero_grad()
        assert sum(allocator.ranks().values()) == allocator.target_budget
    finally:
        score_base._REGISTRY.pop("abs_grad", None)
