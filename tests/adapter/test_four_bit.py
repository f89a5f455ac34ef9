"""``load_in_4bit``: a 4-bit (NF4, bitsandbytes) base model with a float32 AdaLoRA adapter (QLoRA-style).

A tiny random LLaMA causal LM saved to a folder is loaded through the engine (``load_model_and_tokenizer``, so
``from_pretrained`` quantizes it), wrapped by ``build_adapted_model`` (PEFT's ``SVDLinear4bit`` around every
``Linear4bit``), trained with the default score and a per-example one, and ends with the same rank-pattern keys
and mask lengths as the float32 run; its saved adapter reloads onto a 4-bit base in stock PEFT with identical
logits. The per-example hooks read only the adapter branch, so on the 4-bit model their moments equal batch-1
backward passes. A GLUE run through the CLI keeps its head (classifier, pooler) unquantized. The config check
names the install command. Tests that need bitsandbytes are skipped without it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import torch
import yaml
from _tolerances import assert_reordered
from conftest import WORDS, write_glue_folder
from test_decoders import token_batches as decoder_batches

from adalora_scores.adapter.peft.build import build_adapted_model
from adalora_scores.adapter.per_example.collector import PerExampleGradients
from adalora_scores.config import TrainConfig
from adalora_scores.demo.tiny_models import save_tiny_model, tiny_config, tiny_model, word_tokenizer
from adalora_scores.engine import train as train_module
from adalora_scores.engine.adapter import adapter_spec
from adalora_scores.engine.train import load_model_and_tokenizer

needs_bitsandbytes = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None,
    reason="bitsandbytes is not installed (pip install -e '.[quantization]'); 4-bit loading needs it",
)

VOCABULARY = 64
STEPS = 8


class CausalTokens:
    """The part of a task the engine's model loading uses: a causal-LM head, nothing trained fully."""

    modules_to_save: tuple[str, ...] = ()

    def load_model(self, name: str, **model_options):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(name, **model_options)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model(tiny_config("llama", vocab_size=VOCABULARY), head="causal-lm").save_pretrained(folder)
    word_tokenizer(WORDS).save_pretrained(folder)
    return folder


def token_batches(count: int, rows: int = 4, length: int = 8, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    return decoder_batches(count, seed=seed, rows=rows, length=length)


def train_run(folder, score: str, load_in_4bit: bool):
    """The engine's loading and wrapping, then the documented PEFT loop with the allocation after each step."""
    config = TrainConfig(
        task="causal",
        model=str(folder),
        score=score,
        load_in_4bit=load_in_4bit,
        init_r=3,
        target_r=1,
        budget_warmup=2,
        budget_final=2,
        mask_interval=1,
        lora_alpha=6,
    )
    model, _ = load_model_and_tokenizer(config, CausalTokens())
    torch.manual_seed(1)
    adapted = build_adapted_model(model, adapter_spec(config, STEPS, CausalTokens.modules_to_save))
    adapted.hooked = adapted.allocator.per_example is not None  # the hooks go when the pattern freezes
    optimizer = torch.optim.AdamW([p for p in adapted.model.parameters() if p.requires_grad], lr=5e-2)
    for step, batch in enumerate(token_batches(STEPS), start=1):
        adapted.model(**batch).loss.backward()
        optimizer.step()
        adapted.allocate(step)
        optimizer.zero_grad()
    return adapted


@needs_bitsandbytes
@pytest.mark.parametrize("score", ["sensitivity", "fisher_per_example"])
def test_four_bit_llama_trains_to_the_same_pattern_shape_and_reloads(score, llama_dir, tmp_path):
    import bitsandbytes as bnb
    from peft import PeftModel
    from peft.tuners.adalora.bnb import SVDLinear4bit

    adapted = train_run(llama_dir, score, load_in_4bit=True)
    model, allocator = adapted.model, adapted.allocator
    layers = [m for m in model.modules() if isinstance(m, SVDLinear4bit)]
    assert len(layers) == len(allocator.layout.matrices) == 14  # q, k, v, o, gate, up, down × 2 layers
    assert all(isinstance(layer.get_base_layer(), bnb.nn.Linear4bit) for layer in layers)
    lm_head = model.get_base_model().lm_head
    assert type(lm_head) is torch.nn.Linear and lm_head.weight.dtype == torch.float32  # left unquantized
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
    assert adapted.hooked == score.endswith("_per_example")
    kept, target = sum(allocator.ranks().values()), allocator.target_budget
    ties = int((allocator.triplet_scores() == allocator.last_event.threshold).sum())
    assert allocator.frozen and (kept == target or (kept < target and ties > 1)), f"kept {kept} of {target}"

    full = train_run(llama_dir, score, load_in_4bit=False).rank_pattern()
    pattern = adapted.rank_pattern()
    assert pattern.keys() == full.keys()
    assert {k: len(v["mask"]) for k, v in pattern.items()} == {k: len(v["mask"]) for k, v in full.items()}
    assert all(v["rank"] == sum(v["mask"]) for v in pattern.values())

    adapted.save(tmp_path / "adapter")  # adapter/peft/saving.py on the 4-bit model
    config = TrainConfig(task="causal", model=str(llama_dir), load_in_4bit=True)
    base, _ = load_model_and_tokenizer(config, CausalTokens())
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    model.eval()
    inputs = {"input_ids": token_batches(1, seed=3)[0]["input_ids"]}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=1e-5, atol=1e-6)


@needs_bitsandbytes
def test_per_example_moments_on_a_four_bit_model_match_batch_one_backward_passes(llama_dir):
    """The hooks see the dropped-out input and the output gradient of ``SVDLinear4bit``: the moments equal those of
    one backward pass per sequence through the same 4-bit model, and m1 equals ``p.grad`` (rows of equal length,
    so the token mean is the row mean; ``orth_reg_weight=0``, so ``p.grad`` holds no regulariser gradient)."""
    config = TrainConfig(
        task="causal",
        model=str(llama_dir),
        load_in_4bit=True,
        init_r=3,
        target_r=2,
        budget_warmup=2,
        budget_final=4,
        mask_interval=2,
        lora_alpha=6,
        orth_reg_weight=0.0,
        score="fisher_per_example",
    )
    model, _ = load_model_and_tokenizer(config, CausalTokens())
    adapted = build_adapted_model(model, adapter_spec(config, 20))
    model, layout = adapted.model.train(), adapted.allocator.layout
    adapted.allocator.close_per_example()  # a collector of our own below
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # random O(1) adapter entries: PEFT starts at λ = 0, where P and Q get no gradient
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    batch = token_batches(1, rows=3, seed=5)[0]
    rows = []
    for row in range(3):
        model.zero_grad()
        model.base_model.model(**{key: value[row : row + 1] for key, value in batch.items()}).loss.backward()
        rows.append(layout.gather_gradients().clone())
    reference = torch.stack(rows)
    assert reference.abs().amax(dim=0).gt(0).all()  # every λ, P and Q entry is checked

    model.zero_grad()
    with PerExampleGradients(model, layout, loss_reduction="token_mean") as collector:
        model(**batch).loss.backward()
        moments = collector.consume()
    assert moments.count == 3
    terms = 8 * 32  # products per gradient entry: tokens × the widest layer (intermediate 32); the same 4-bit weights
    assert_reordered(moments.mean, reference.mean(0), terms)
    assert_reordered(moments.mean_square, reference.square().mean(0), terms)
    assert_reordered(moments.mean, layout.gather_gradients(), terms)


@needs_bitsandbytes
def test_glue_cli_run_in_four_bits_keeps_the_head_unquantized(tmp_path, monkeypatch):
    import bitsandbytes as bnb

    from adalora_scores.cli import main

    built = []

    def keep(*args, build=train_module.build_adapted_model):
        built.append(build(*args))
        return built[-1]

    monkeypatch.setattr(train_module, "build_adapted_model", keep)
    write_glue_folder(tmp_path / "sst2", "sst2")
    model_dir = save_tiny_model(tmp_path / "bert", WORDS)
    out = tmp_path / "run"
    args = [
        "train",
        "--task",
        "sst2",
        "--score",
        "gsnr_per_example",
        "--model",
        str(model_dir),
        "--data",
        str(tmp_path / "sst2"),
        "--output",
        str(out),
        "load_in_4bit=true",
        "torch_dtype=bfloat16",
        "num_epochs=2",
        "batch_size=4",
        "init_r=4",
        "target_r=2",
        "mask_interval=1",
        "max_seq_length=32",
        "learning_rate=5e-3",
        "eval_batch_size=4",
    ]
    assert main(args) == 0
    base = built[0].model.get_base_model()
    assert isinstance(base.bert.encoder.layer[0].attention.self.query.base_layer, bnb.nn.Linear4bit)
    assert base.bert.encoder.layer[0].attention.self.query.base_layer.compute_dtype == torch.bfloat16
    for head in ("classifier", "bert.pooler"):  # modules_to_save: trained fully, so not quantized
        copy = base.get_submodule(head).modules_to_save["default"]
        trained = [m for m in copy.modules() if "Linear" in type(m).__name__]
        assert trained and all(type(m) is torch.nn.Linear and m.weight.requires_grad for m in trained)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["load_in_4bit"] is True and (out / "metrics.json").is_file()


# -- the config check (no bitsandbytes needed) ----------------------------------------------------------------------


def test_load_in_4bit_without_bitsandbytes_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(
        ValueError,
        match=r"needs bitsandbytes, which is not installed: pip install -e "
        r"'\.\[quantization\]' in the adalora-scores checkout",
    ):
        TrainConfig(task="sst2", load_in_4bit=True)
    TrainConfig(task="sst2")  # the default needs nothing


def test_load_in_4bit_refuses_an_old_bitsandbytes_and_a_non_boolean(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.5")
    with pytest.raises(ValueError, match=r"needs bitsandbytes >= 0.47, found 0.45.5: pip install"):
        TrainConfig(task="sst2", load_in_4bit=True)
    with pytest.raises(ValueError, match="load_in_4bit must be true or false, got 'yes'"):
        TrainConfig(task="sst2", load_in_4bit="yes")


def test_a_run_folder_without_the_field_is_unchanged():
    from adalora_scores.runs.files import config_changes

    saved = {k: v for k, v in TrainConfig(task="sst2").to_dict().items() if k != "load_in_4bit"}
    assert config_changes(saved, TrainConfig(task="sst2")) == []


class LegacyCausalTokens(CausalTokens):
    """A task written before ``load_model`` took ``**model_options``."""

    name = "legacy"

    def load_model(self, name: str):
        return super().load_model(name)


def test_a_task_without_model_options_still_loads_in_torch_dtype(llama_dir):
    config = TrainConfig(task="causal", model=str(llama_dir), torch_dtype="bfloat16")
    model, _ = load_model_and_tokenizer(config, LegacyCausalTokens())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # cast after loading, as before


@needs_bitsandbytes
def test_a_task_without_model_options_cannot_load_in_four_bits(llama_dir):
    config = TrainConfig(task="causal", model=str(llama_dir), load_in_4bit=True)
    with pytest.raises(TypeError, match=r"task legacy: load_model\(name\) takes no model options.*\*\*model_options"):
        load_model_and_tokenizer(config, LegacyCausalTokens())
