"""``torch_dtype``: a bf16 base model trains an fp32 adapter through the CLI. DeepSpeed and FSDP, whose ``p.grad``
is not the full gradient, are refused at start-up (simulated accelerate state; DeepSpeed is not installed)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import PartialState
from accelerate.utils import DistributedType
from conftest import write_glue_folder

import adalora_scores
from adalora_scores.cli import main
from adalora_scores.config import TrainConfig
from adalora_scores.engine import train as train_module

TINY = [
    "num_epochs=2",
    "batch_size=4",
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=32",
    "learning_rate=5e-3",
    "eval_batch_size=4",
]


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glue") / "sst2"
    write_glue_folder(folder, "sst2")
    return folder


def test_bfloat16_base_model_trains_an_adapter_via_cli(sst2, tiny_model_dir, tmp_path, monkeypatch):
    built = []

    def keep(*args, build=train_module.build_adapted_model):
        built.append(build(*args))
        return built[-1]

    monkeypatch.setattr(train_module, "build_adapted_model", keep)
    out = tmp_path / "run"
    args = [
        "train",
        "--task",
        "sst2",
        "--score",
        "fisher_per_example",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(sst2),
        "--output",
        str(out),
        "torch_dtype=bfloat16",
        *TINY,
    ]
    assert main(args) == 0

    model = built[0].model
    adapter = {name: p for name, p in model.named_parameters() if "lora_" in name}
    base = {name: p for name, p in model.named_parameters() if "lora_" not in name and not p.requires_grad}
    assert base and {p.dtype for p in base.values()} == {torch.bfloat16}
    assert {p.dtype for p in adapter.values()} == {torch.float32}
    assert any(p.abs().sum() > 0 for name, p in adapter.items() if "lora_E" in name)  # λ starts at 0: it trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["eval"]["dev"]["accuracy"]) and math.isfinite(metrics["train_loss"])
    assert metrics["steps"] == metrics["total_steps"] == 12
    assert "torch_dtype: bfloat16" in (out / "config.yaml").read_text()


def test_torch_dtype_is_validated():
    with pytest.raises(ValueError, match="torch_dtype must be bfloat16, float16, float32 or null, got 'bf16'"):
        TrainConfig(task="sst2", torch_dtype="bf16")


@pytest.mark.parametrize("kind", [DistributedType.DEEPSPEED, DistributedType.FSDP])
def test_sharded_gradients_are_refused_before_any_work(kind, sst2, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: kind))
    loaded = []
    monkeypatch.setattr(train_module, "load_model_and_tokenizer", lambda *a: loaded.append(a))
    config = TrainConfig(task="sst2", model=str(tiny_model_dir), data=str(sst2))
    with pytest.raises(RuntimeError, match=r"Supported: a single process, DDP .* To fix it, "):
        train_module.train(config, tmp_path / "run")
    assert not loaded and not (tmp_path / "run").exists()


def test_attach_refuses_deepspeed_state(monkeypatch):
    from _tiny import tiny_adalora

    model = tiny_adalora()
    monkeypatch.setitem(PartialState._shared_state, "distributed_type", DistributedType.DEEPSPEED)
    with pytest.raises(RuntimeError, match="which DeepSpeed .* does not provide"):
        adalora_scores.attach(model, score="sensitivity")
    monkeypatch.setitem(PartialState._shared_state, "distributed_type", DistributedType.MULTI_GPU)  # DDP is fine
    adalora_scores.attach(model, score="sensitivity")
