"""The two CPU paths of a bitsandbytes 4-bit layer, tested on every host.

On CPUs with AVX512-BF16, ``Linear4bit.forward`` repacks its weight for a bfloat16 kernel when it evaluates
(``adapter/peft/quantization.py`` says when, and what the repacking guard does). A CPU without the feature never takes
that path, so the tests choose the path themselves by setting each layer's ``support_avx512bf16_for_cpu`` flag. The
repacked forward then needs bitsandbytes' kernel, which is built only where the CPU has the feature; elsewhere
:func:`packed_reference` (the same product computed with torch from the repacked layout) stands in for it, and on a
host that has both, the two are compared.

The model is a tiny random LLaMA whose layer widths cover both cases: q (64 → 32) can be repacked (output width a
multiple of 32, input width a multiple of the 64-wide quantization block); k and v (64 → 8), o (32 → 64), gate and
up (64 → 80) and down (80 → 64) cannot.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from conftest import WORDS
from test_four_bit import CausalTokens, token_batches

from adalora_scores.adapter.peft.build import build_adapted_model
from adalora_scores.adapter.peft.quantization import REPACK_BLOCK, can_repack, guard_cpu_repacking
from adalora_scores.config import TrainConfig
from adalora_scores.demo.tiny_models import tiny_config, tiny_model, word_tokenizer
from adalora_scores.engine.adapter import adapter_spec
from adalora_scores.engine.train import load_model_and_tokenizer

bitsandbytes_spec = importlib.util.find_spec("bitsandbytes")
pytestmark = pytest.mark.skipif(
    bitsandbytes_spec is None, reason="bitsandbytes is not installed (pip install -e '.[quantization]')"
)

STEPS = 6
WIDTHS = {"hidden_size": 64, "intermediate_size": 80, "num_attention_heads": 4}
BFLOAT16_ROUNDING = 2.0**-8
"""bfloat16's unit roundoff. The repacked kernel rounds its input and its output to bfloat16 (and multiplies
bfloat16 weights), so each repacked layer adds a relative error of a few units; the tolerances below allow 4."""


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama-widths")
    tiny_model(tiny_config("llama", vocab_size=64, **WIDTHS), head="causal-lm").save_pretrained(folder)
    word_tokenizer(WORDS).save_pretrained(folder)
    return folder


def packed_reference(A: torch.Tensor, B: torch.Tensor, state) -> torch.Tensor:
    """x Wᵀ for a repacked 4-bit weight, as bitsandbytes' AVX512-BF16 kernel computes it: the input and the
    dequantized weight rounded to bfloat16, products summed in float32, the result in bfloat16.

    The 4-bit codes come back through bitsandbytes' inverse permutation (on a copy of the state, told not to
    re-quantize the absmax); W[n, k] = code[c[n, k]] · absmax[k // blocksize, n], the absmax in the repacked
    (in_features / blocksize, out_features) bfloat16 layout."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    plain = copy.copy(state)
    plain.original_nested = False
    data, _ = _convert_weight_packed_for_cpu_inverse(B.clone(), plain)
    data = data.reshape(-1).view(torch.uint8)
    codes = torch.empty(data.numel() * 2, dtype=torch.long)
    codes[0::2], codes[1::2] = (data >> 4).long(), (data & 0xF).long()  # high nibble first, as bitsandbytes packs
    out_features, in_features = state.shape
    scale = state.absmax.float().T.repeat_interleave(state.blocksize, dim=1)  # (out, in)
    weight = (state.code.float()[codes].reshape(out_features, in_features) * scale).to(torch.bfloat16)
    product = A.to(torch.bfloat16).float() @ weight.float().T
    return product.to(torch.bfloat16)


@pytest.fixture
def repacked_kernel(monkeypatch):
    """bitsandbytes' repacked-layout kernel where this CPU has it; :func:`packed_reference` elsewhere."""
    import bitsandbytes.functional as functional

    if not hasattr(functional, "_convert_weight_packed_for_cpu"):
        pytest.skip("this bitsandbytes has no CPU repacking (it came with 0.48)")
    if functional.has_avx512bf16():
        return "bitsandbytes"
    plain = functional.gemv_4bit

    def gemv_4bit(A, B, out=None, transposed_A=False, transposed_B=False, state=None):
        if getattr(state, "packing_format_for_cpu", False):
            result = packed_reference(A, B, state)
            return out.copy_(result) if out is not None else result
        return plain(A, B, out=out, transposed_A=transposed_A, transposed_B=transposed_B, state=state)

    monkeypatch.setattr(functional, "gemv_4bit", gemv_4bit)
    return "reference"


def four_bit_layers(model):
    from bitsandbytes.nn import Linear4bit

    return {name: m for name, m in model.named_modules() if isinstance(m, Linear4bit)}


def choose_path(model, path: str) -> None:
    """Every 4-bit layer as on a CPU with AVX512-BF16 (``repacked``) or without (``plain``)."""
    for layer in four_bit_layers(model).values():
        layer.support_avx512bf16_for_cpu = path == "repacked"


def train_and_evaluate(folder, path: str, evaluate: bool = True):
    """Engine loading, AdaLoRA, the documented PEFT loop; the model evaluated halfway and at the end."""
    config = TrainConfig(
        task="causal",
        model=str(folder),
        load_in_4bit=True,
        init_r=3,
        target_r=1,
        budget_warmup=1,
        budget_final=2,
        mask_interval=1,
        lora_alpha=6,
    )
    model, _ = load_model_and_tokenizer(config, CausalTokens())
    choose_path(model, path)
    torch.manual_seed(1)
    adapted = build_adapted_model(model, adapter_spec(config, STEPS, CausalTokens.modules_to_save))
    optimizer = torch.optim.AdamW([p for p in adapted.model.parameters() if p.requires_grad], lr=5e-2)
    probe = token_batches(1, rows=3, seed=9)[0]["input_ids"]
    losses, logits = [], []
    for step, batch in enumerate(token_batches(STEPS), start=1):
        adapted.model.train()
        loss = adapted.model(**batch).loss
        loss.backward()
        optimizer.step()
        adapted.allocate(step)
        optimizer.zero_grad()
        losses.append(loss.detach())
        if evaluate and step in (STEPS // 2, STEPS):
            adapted.model.eval()
            with torch.no_grad():
                logits.append(adapted.model(input_ids=probe).logits)
    return torch.stack(losses), logits, adapted.model


def test_which_widths_the_repacking_takes():
    assert REPACK_BLOCK == 32
    assert can_repack((64, 64), 64) and can_repack((32, 128), 64) and can_repack((96, 64), 32)
    assert not can_repack((80, 64), 64)  # output width not a multiple of 32: bitsandbytes asserts
    assert not can_repack((64, 80), 64)  # input width not a multiple of the block: the absmax reshape fails
    assert not can_repack((16, 16), 64) and not can_repack((64,), 64)


def test_train_evaluate_train_evaluate_gives_the_same_results_on_both_cpu_paths(llama_dir, repacked_kernel):
    plain_losses, plain_logits, _ = train_and_evaluate(llama_dir, "plain")
    losses, logits, model = train_and_evaluate(llama_dir, "repacked")

    layers = four_bit_layers(model)  # after the last evaluation: the layers that can be repacked are
    repacked = {n for n, m in layers.items() if getattr(m.weight.quant_state, "packing_format_for_cpu", False)}
    assert repacked == {f"base_model.model.model.layers.{i}.self_attn.q_proj.base_layer" for i in (0, 1)}
    assert all(not layers[n].support_avx512bf16_for_cpu for n in set(layers) - repacked)  # left on the plain path

    # training never runs on the repacked layout: every loss is the plain path's, bit for bit, and the same as a
    # run that never evaluated (evaluating does not move the frozen 4-bit weights)
    assert torch.equal(losses, plain_losses)
    assert torch.equal(losses, train_and_evaluate(llama_dir, "repacked", evaluate=False)[0])
    for repacked_output, plain_output in zip(logits, plain_logits, strict=True):
        scale = float(plain_output.abs().max())
        torch.testing.assert_close(
            repacked_output, plain_output, rtol=4 * BFLOAT16_ROUNDING, atol=4 * BFLOAT16_ROUNDING * scale
        )


def test_training_after_evaluation_restores_the_weight_exactly(llama_dir, repacked_kernel):
    """The guard puts a repacked layer back bit for bit: codes, absmax, the double-quantization state."""
    config = TrainConfig(task="causal", model=str(llama_dir), load_in_4bit=True)
    model, _ = load_model_and_tokenizer(config, CausalTokens())
    choose_path(model, "repacked")
    layer = model.model.layers[0].self_attn.q_proj
    state = layer.weight.quant_state
    before = layer.weight.data.clone(), {k: v.clone() for k, v in state.as_dict(packed=True).items()}
    inputs = torch.randn(2, 5, WIDTHS["hidden_size"])
    expected = layer.train()(inputs)
    with torch.no_grad():
        layer.eval()(inputs)
    assert state.packing_format_for_cpu and state.dtype == torch.bfloat16  # repacked by bitsandbytes
    again = layer.train()(inputs)
    assert not state.packing_format_for_cpu and torch.equal(layer.weight.data, before[0])
    after = state.as_dict(packed=True)
    assert after.keys() == before[1].keys() and all(torch.equal(after[k], before[1][k]) for k in after)
    assert torch.equal(again, expected)


def test_a_layer_repacked_before_the_guard_still_trains(llama_dir, repacked_kernel):
    """A model evaluated before :func:`guard_cpu_repacking` was installed: bitsandbytes' own inverse (which
    re-quantizes the absmax, so the weight is only close) instead of an assertion or the inference kernel."""
    config = TrainConfig(task="causal", model=str(llama_dir), load_in_4bit=True)
    model, _ = load_model_and_tokenizer(config, CausalTokens())
    layer = model.model.layers[0].self_attn.q_proj
    layer._repacking_guard.remove()
    del layer._repacking_guard
    layer.support_avx512bf16_for_cpu = True
    inputs = torch.randn(2, 5, WIDTHS["hidden_size"])
    expected = layer.train()(inputs)
    with torch.no_grad():
        layer.eval()(inputs)
    assert layer.weight.quant_state.packing_format_for_cpu
    assert guard_cpu_repacking(model) == len(four_bit_layers(model))
    trained = layer.train()(inputs.requires_grad_())
    assert not layer.weight.quant_state.packing_format_for_cpu
    trained.sum().backward()
    assert inputs.grad is not None and inputs.grad.abs().sum() > 0  # the gradient reaches the layer's input
    torch.testing.assert_close(trained, expected, rtol=4 * BFLOAT16_ROUNDING, atol=1e-3)


def test_the_reference_kernel_matches_bitsandbytes(llama_dir):
    """Where the CPU has AVX512-BF16, the stand-in used elsewhere computes what bitsandbytes' kernel computes."""
    import bitsandbytes.functional as functional

    if not hasattr(functional, "_convert_weight_packed_for_cpu") or not functional.has_avx512bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes has no repacked-layout kernel here to compare with")
    config = TrainConfig(task="causal", model=str(llama_dir), load_in_4bit=True)
    model, _ = load_model_and_tokenizer(config, CausalTokens())
    layer = model.model.layers[1].self_attn.q_proj.eval()  # the layer that can be repacked
    inputs = torch.randn(7, layer.in_features)
    with torch.no_grad():
        kernel = layer(inputs)
    state = layer.weight.quant_state
    assert state.packing_format_for_cpu
    reference = packed_reference(inputs, layer.weight.data, state).float()
    torch.testing.assert_close(kernel, reference, rtol=2 * BFLOAT16_ROUNDING, atol=2 * BFLOAT16_ROUNDING)
