"""Export to PEFT LoRA (``adapter/peft/export.py``, ``adalora-scores export``): the exported adapter, loaded by stock
PEFT, gives the AdaLoRA adapter's logits (rtol 1e-5) for a sequence classifier with a saved head, a question-answering
model, LLaMA and GPT-2 (``fan_in_fan_out``) causal LMs and a 4-bit LLaMA base, at the exact ranks and at a uniform
rank; the merged model (transformers alone) gives them too. Each server's scaling rule (PEFT, vLLM, llama.cpp),
reimplemented below from its source, applied to the exported files reproduces the AdaLoRA logits on the route the
export names for it, and the routes it would misread are warned of (or refused by the server). On a run trained by
the engine: the command's files and report, the smaller file, a fresh Python process with no adalora-scores import,
and the refusals.

Every AdaLoRA adapter here is drawn at random with a rank pattern that keeps 0 - 4 triplets per matrix (one matrix
pruned to rank 0), saved with ``save_adapter`` and reloaded by stock PEFT, as a finished run's adapter is."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import AdaLoraConfig, PeftModel, get_peft_model
from peft.tuners.adalora.layer import AdaLoraLayer
from safetensors.torch import load_file

from adalora_scores.adapter.peft.export import kept_ranks, lora_export, merged_model, write_lora_export
from adalora_scores.adapter.peft.saving import load_adapter, save_adapter
from adalora_scores.demo.tiny_models import tiny_config, tiny_model
from adalora_scores.engine.export import EXPORT_RECORD, serving, vllm_max_lora_rank

VOCABULARY = 64
# float32 logits of O(1) through the same layers and the same float32 A ∘ E; only the final scaling of the update is
# rounded in another order (one multiplication instead of a multiplication and a division)
RTOL, ATOL = 1e-5, 1e-6

CASES = {
    "sequence classifier": (
        "bert",
        "sequence-classification",
        "SEQ_CLS",
        ["query", "key", "value", "dense"],
        ["classifier"],
    ),
    "question answering": ("bert", "question-answering", "QUESTION_ANS", ["query", "value", "dense"], ["qa_outputs"]),
    "llama": (
        "llama",
        "causal-lm",
        "CAUSAL_LM",
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
        None,
    ),
    "gpt2": ("gpt2", "causal-lm", "CAUSAL_LM", ["c_attn", "c_proj", "c_fc"], None),
}


def base_model(case: str):
    model_type, head, *_ = CASES[case]
    return tiny_model(tiny_config(model_type, vocab_size=VOCABULARY), head=head, seed=3)


def trained_looking(model: PeftModel, seed: int = 0) -> dict[str, list[bool]]:
    """Random A, λ and B (and heads) with a rank pattern: matrix i keeps the triplets j with (i + j) % 3 != 0, the
    first matrix none. Returns the pattern (PEFT's keys)."""
    generator = torch.Generator().manual_seed(seed)
    pattern = {}
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, AdaLoraLayer)]
    with torch.no_grad():
        for index, (name, module) in enumerate(layers):
            rank = module.lora_E["default"].shape[0]
            keep = [index > 0 and (index + j) % 3 != 0 for j in range(rank)]
            for role, scale in (("lora_A", 0.1), ("lora_B", 0.1), ("lora_E", 0.5)):
                parameter = module.__getattr__(role)["default"]
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
            module.lora_E["default"][~torch.tensor(keep)] = 0
            pattern[name.removeprefix("base_model.model.") + ".lora_E.default"] = keep
        for name, parameter in model.named_parameters():
            if "modules_to_save" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    model.peft_config["default"].rank_pattern = pattern
    return pattern


def adalora_folder(case: str, folder: Path) -> Path:
    model_type, _, task_type, targets, heads = CASES[case]
    config = AdaLoraConfig(
        init_r=4,
        target_r=2,
        total_step=10,
        tinit=1,
        tfinal=1,
        lora_alpha=8,
        target_modules=targets,
        modules_to_save=heads,
        task_type=task_type,
        fan_in_fan_out=model_type == "gpt2",
    )
    model = get_peft_model(base_model(case), config)
    trained_looking(model)
    save_adapter(model, folder)
    return folder


def logits(model, case: str) -> torch.Tensor:
    input_ids = torch.randint(2, VOCABULARY, (3, 10), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        outputs = model.eval()(input_ids=input_ids)
    if CASES[case][1] == "question-answering":
        return torch.stack([outputs.start_logits, outputs.end_logits])
    return outputs.logits


@pytest.mark.parametrize("case", list(CASES))
def test_the_exported_lora_adapter_computes_the_adalora_adapters_logits(case, tmp_path):
    adalora = adalora_folder(case, tmp_path / "adalora")
    reference = load_adapter(base_model(case), adalora)  # stock PEFT, resized to the rank pattern
    expected = logits(reference, case)
    exact = lora_export(reference)
    assert kept_ranks(reference) == exact.ranks  # read without forming the factors
    pruned = [name for name, rank in exact.ranks.items() if rank == 0]
    assert len(pruned) == 1 and pruned[0] not in exact.config.target_modules  # rank 0: left out
    assert set(exact.ranks.values()) - {0} and max(exact.ranks.values()) <= 4
    for export, folder in ((exact, "exact"), (lora_export(reference, uniform_rank=8), "uniform")):
        write_lora_export(export, tmp_path / folder)
        saved = json.loads((tmp_path / folder / "adapter_config.json").read_text())
        assert saved["peft_type"] == "LORA" and saved["lora_alpha"] == pytest.approx(saved["r"] * 8 / 4.00001)
        loaded = PeftModel.from_pretrained(base_model(case), tmp_path / folder)
        torch.testing.assert_close(logits(loaded, case), expected, rtol=RTOL, atol=ATOL)
        kept = {
            name: module.lora_A["default"].weight.shape[0]
            for name, module in loaded.base_model.model.named_modules()
            if hasattr(module, "lora_A") and "default" in module.lora_A
        }
        wanted = {n: r for n, r in exact.ranks.items() if r} if folder == "exact" else dict.fromkeys(kept, 8)
        assert kept == wanted
    uniform = json.loads((tmp_path / "uniform" / "adapter_config.json").read_text())
    assert uniform["r"] == 8 and not uniform["rank_pattern"] and not uniform["alpha_pattern"]
    merged = merged_model(load_adapter(base_model(case), adalora))
    torch.testing.assert_close(logits(merged, case), expected, rtol=RTOL, atol=ATOL)


def test_heads_come_along(tmp_path):
    adalora = adalora_folder("sequence classifier", tmp_path / "adalora")
    write_lora_export(lora_export(load_adapter(base_model("sequence classifier"), adalora)), tmp_path / "lora")
    heads = {key for key in load_file(tmp_path / "lora" / "adapter_model.safetensors") if "lora_" not in key}
    assert heads == {"base_model.model.classifier.weight", "base_model.model.classifier.bias"}
    original = load_file(adalora / "adapter_model.safetensors")
    exported = load_file(tmp_path / "lora" / "adapter_model.safetensors")
    for key in heads:
        assert torch.equal(exported[key], original[key])


def test_a_uniform_rank_below_the_largest_kept_rank_and_an_empty_adapter_are_refused(tmp_path):
    reference = load_adapter(base_model("llama"), adalora_folder("llama", tmp_path / "adalora"))
    largest = max(lora_export(reference).ranks.values())
    with pytest.raises(ValueError, match=f"below the largest kept rank \\({largest}\\)"):
        lora_export(reference, uniform_rank=largest - 1)
    for module in reference.modules():
        if isinstance(module, AdaLoraLayer):
            module.lora_E["default"].data.zero_()
    with pytest.raises(ValueError, match="every adapted matrix was pruned to rank 0"):
        lora_export(reference)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_a_4_bit_base_exports_exactly_and_refuses_to_merge(tmp_path):
    from test_four_bit import CausalTokens

    from adalora_scores.config import TrainConfig
    from adalora_scores.demo.tiny_models import word_tokenizer
    from adalora_scores.engine.model import load_model_and_tokenizer

    folder = tmp_path / "llama"
    base_model("llama").save_pretrained(folder)
    word_tokenizer(["a tiny vocabulary"]).save_pretrained(folder)  # a model folder holds its tokenizer
    config = TrainConfig(task="causal", model=str(folder), load_in_4bit=True)

    def four_bit():
        return load_model_and_tokenizer(config, CausalTokens())[0]

    adalora = AdaLoraConfig(
        init_r=4,
        target_r=2,
        total_step=10,
        tinit=1,
        tfinal=1,
        lora_alpha=8,
        target_modules=CASES["llama"][3],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(four_bit(), adalora)
    trained_looking(model)
    save_adapter(model, tmp_path / "adalora")
    reference = load_adapter(four_bit(), tmp_path / "adalora")
    expected = logits(reference, "llama")
    write_lora_export(lora_export(reference), tmp_path / "lora")
    loaded = PeftModel.from_pretrained(four_bit(), tmp_path / "lora")
    torch.testing.assert_close(logits(loaded, "llama"), expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="loaded in 4 bits: merging would requantize .* load_in_4bit=false"):
        merged_model(reference)


# -- each server's scaling, reimplemented from its source ------------------------------------------------------------
def _pattern_value(patterns: dict, name: str):
    """PEFT's ``get_pattern_key`` (peft/utils/other.py, peft 0.21): the first key that matches the module name as a
    suffix starting at a "." boundary, ``re.match(rf"(.*\\.)?({key})$", name)``."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return None


def _lora_pairs(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module name (relative to the transformers model) → (``lora_A``, ``lora_B``) of PEFT's saved keys."""
    names = {
        key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        for key in tensors
        if key.endswith(".lora_A.weight")
    }
    key = "base_model.model.{}.lora_{}.weight".format
    return {name: (tensors[key(name, "A")], tensors[key(name, "B")]) for name in names}


def _heads(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.removeprefix("base_model.model."): value for key, value in tensors.items() if ".lora_" not in key}


def peft_updates(config: dict, tensors: dict[str, torch.Tensor]):
    """PEFT LoRA (peft 0.21, ``tuners/lora/model.py`` ``_create_and_replace``, ``layer.py`` ``update_layer``): module k
    gets r_k and α_k from ``rank_pattern`` / ``alpha_pattern`` (suffix match), else ``r`` / ``lora_alpha``; it builds
    its layer at r_k (a saved tensor of another shape does not load) and adds (α_k / r_k) · B A. Heads replace the
    base's. Returns (ΔW per module, head weights)."""
    updates = {}
    for name, (right, left) in _lora_pairs(tensors).items():
        rank = _pattern_value(config["rank_pattern"], name) or config["r"]
        alpha = _pattern_value(config["alpha_pattern"], name) or config["lora_alpha"]
        assert right.shape[0] == rank, (name, right.shape, rank)
        updates[name] = alpha / rank * (left.double() @ right.double())
    return updates, _heads(tensors)


def vllm_updates(config: dict, tensors: dict[str, torch.Tensor], max_lora_rank: int, patterns: bool = False):
    """vLLM (``vllm/lora/peft_helper.py`` at e745baff: ``PEFTHelper.__post_init__``, ``validate_legal``;
    ``vllm/lora/lora_model.py`` ``from_lora_tensors``; ``vllm/lora/lora.py`` ``optimize``): refuses
    ``modules_to_save``, DoRA, a bias and a config ``r`` above ``max_lora_rank``; scales every module by the one
    ``lora_alpha / r`` (``patterns``: as later sources' ``get_rank_and_scaling``, by each module's pattern entries,
    PEFT's rule); each module's rank is its tensors' shape, held in buffers ``max_lora_rank`` wide."""
    problems = []
    if config.get("modules_to_save"):
        problems.append("vLLM only supports modules_to_save being None.")
    if config.get("use_dora"):
        problems.append("vLLM does not yet support DoRA.")
    if config["r"] > max_lora_rank:
        problems.append(f"LoRA rank {config['r']} is greater than max_lora_rank {max_lora_rank}.")
    if config.get("bias", "none") != "none":
        problems.append("Adapter bias cannot be used without bias_enabled.")
    if problems:
        raise ValueError(" ".join(problems))
    updates = {}
    for name, (right, left) in _lora_pairs(tensors).items():
        if right.shape[0] > max_lora_rank:
            raise ValueError(f"{name}: rank {right.shape[0]} does not fit buffers of max_lora_rank {max_lora_rank}")
        if patterns:
            rank = _pattern_value(config["rank_pattern"], name) or config["r"]
            scaling = (_pattern_value(config["alpha_pattern"], name) or config["lora_alpha"]) / rank
        else:
            scaling = config["lora_alpha"] / config["r"]
        updates[name] = scaling * (left.double() @ right.double())
    return updates, {}


def llama_cpp_updates(config: dict, tensors: dict[str, torch.Tensor]):
    """llama.cpp: ``convert_lora_to_gguf.py`` (at 0b03adaa) stops at any tensor that is not ``lora_A`` / ``lora_B``
    (nor a norm) and writes ``lparams["lora_alpha"]`` as the adapter's one alpha (no ``rank_pattern``, no
    ``alpha_pattern``); ``llama_adapter_lora_weight::get_scale`` (``src/llama-adapter.h``) scales each pair by
    ``alpha / b->ne[0]``, the rank of that tensor (1 when alpha is 0)."""
    unexpected = [key for key in tensors if ".lora_A.weight" not in key and ".lora_B.weight" not in key]
    if unexpected:
        raise ValueError(f"Unexpected name '{unexpected[0]}': Not a lora_A or lora_B tensor")
    alpha = float(config["lora_alpha"])
    updates = {}
    for name, (right, left) in _lora_pairs(tensors).items():
        scale = alpha / left.shape[-1] if alpha else 1.0
        updates[name] = scale * (left.double() @ right.double())
    return updates, {}


def served(case: str, read) -> torch.nn.Module:
    """The base model with a server's reading ``(updates, heads)`` of an exported folder merged in."""
    updates, heads = read
    model = base_model(case)
    with torch.no_grad():
        for name, update in updates.items():
            weight = model.get_submodule(name).weight
            weight += (update.T if CASES[case][0] == "gpt2" else update).to(weight.dtype)
        if heads:
            missing = set(heads) - set(model.state_dict())
            assert not missing, missing
            model.load_state_dict(heads, strict=False)
    return model


def _exported(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    return json.loads((folder / "adapter_config.json").read_text()), load_file(folder / "adapter_model.safetensors")


def _written(export, folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, object]]:
    """Write ``export`` as the command does; its files, and :func:`serving`'s verdict per server."""
    write_lora_export(export, folder)
    config, tensors = _exported(folder)
    return config, tensors, {route.server: route for route in serving(config, export.largest_rank, folder)}


def test_each_server_reads_the_route_the_export_names_for_it_exactly(tmp_path):
    reference = load_adapter(base_model("llama"), adalora_folder("llama", tmp_path / "adalora"))
    layers = [module for module in reference.modules() if isinstance(module, AdaLoraLayer)]
    with torch.no_grad():  # one module with a scale of its own: folded into its lora_B for vLLM's one scale
        layers[-1].ranknum["default"].fill_(3.0)
    expected = logits(reference, "llama")
    ranks = kept_ranks(reference)
    largest = max(ranks.values())
    assert len(set(ranks.values()) - {0}) == 2 and largest == 3  # two kept ranks, so one rule cannot fit both
    close = {"rtol": RTOL, "atol": ATOL}

    # one scale (default): PEFT and vLLM exact, at the stated --max-lora-rank; llama.cpp would misread it
    config, tensors, routes = _written(lora_export(reference), tmp_path / "exact")
    assert config["lora_alpha"] / config["r"] == pytest.approx(8 / 4.00001)
    stated = vllm_max_lora_rank(largest)
    assert stated == 8 and f"--max-lora-rank {stated} " in routes["vLLM"].how  # the smallest vLLM value above 3
    torch.testing.assert_close(logits(served("llama", peft_updates(config, tensors)), "llama"), expected, **close)
    for patterns in (False, True):
        read = vllm_updates(config, tensors, stated, patterns=patterns)
        torch.testing.assert_close(logits(served("llama", read), "llama"), expected, **close)
    with pytest.raises(ValueError, match="max_lora_rank 1"):  # the accepted value below the stated one is too small
        vllm_updates(config, tensors, 1)
    misread = logits(served("llama", llama_cpp_updates(config, tensors)), "llama")
    assert not torch.allclose(misread, expected, **close)
    assert not routes["llama.cpp"].exact and all(
        fix in routes["llama.cpp"].how for fix in ("--llama-cpp", "--uniform-rank", "--merge")
    )
    assert routes["PEFT"].exact and routes["vLLM"].exact

    # scales folded into lora_B: PEFT and llama.cpp exact; vLLM's one scale would misread it
    config, tensors, routes = _written(lora_export(reference, fold_scales=True), tmp_path / "folded")
    assert not config["alpha_pattern"] and config["rank_pattern"]
    for read in (
        peft_updates(config, tensors),
        llama_cpp_updates(config, tensors),
        vllm_updates(config, tensors, stated, patterns=True),
    ):
        torch.testing.assert_close(logits(served("llama", read), "llama"), expected, **close)
    misread = logits(served("llama", vllm_updates(config, tensors, stated)), "llama")
    assert not torch.allclose(misread, expected, **close)
    assert routes["llama.cpp"].exact and not routes["vLLM"].exact and "without --llama-cpp" in routes["vLLM"].how

    # one uniform rank, in either form: every server exact
    for fold in (False, True):
        config, tensors, routes = _written(lora_export(reference, uniform_rank=8, fold_scales=fold), tmp_path / "u")
        assert all(route.exact for route in routes.values()) and "--max-lora-rank 8 " in routes["vLLM"].how
        for read in (
            peft_updates(config, tensors),
            vllm_updates(config, tensors, 8),
            llama_cpp_updates(config, tensors),
        ):
            torch.testing.assert_close(logits(served("llama", read), "llama"), expected, **close)


def test_a_classifier_export_reads_right_in_peft_and_is_refused_by_vllm_and_llama_cpp(tmp_path):
    reference = load_adapter(base_model("sequence classifier"), adalora_folder("sequence classifier", tmp_path / "a"))
    expected = logits(reference, "sequence classifier")
    config, tensors, routes = _written(lora_export(reference), tmp_path / "lora")
    read = peft_updates(config, tensors)
    assert set(read[1]) == {"classifier.weight", "classifier.bias"}
    torch.testing.assert_close(
        logits(served("sequence classifier", read), "sequence classifier"), expected, rtol=RTOL, atol=ATOL
    )
    with pytest.raises(ValueError, match="modules_to_save"):
        vllm_updates(config, tensors, 64)
    with pytest.raises(ValueError, match="Unexpected name 'base_model.model.classifier"):
        llama_cpp_updates(config, tensors)
    assert routes["PEFT"].exact and not routes["vLLM"].exact and not routes["llama.cpp"].exact
    assert "modules_to_save: classifier" in routes["vLLM"].how and "generative models only" in routes["vLLM"].how
    assert "--merge" in routes["llama.cpp"].how


def test_the_stated_max_lora_rank_is_the_smallest_value_vllm_accepts_that_holds_the_largest_rank():
    # vLLM's accepted values: 1, 8, 16, 32, 64, 128, 256, 320, 512 (vllm/config/lora.py MaxLoRARanks)
    cases = {1: 1, 2: 8, 8: 8, 9: 16, 37: 64, 64: 64, 65: 128, 300: 320, 512: 512, 513: None}
    assert {largest: vllm_max_lora_rank(largest) for largest in cases} == cases
    config = {"r": 2, "lora_alpha": 4.0, "rank_pattern": {}, "alpha_pattern": {}}
    assert "--max-lora-rank 64 " in {r.server: r for r in serving(config, 37)}["vLLM"].how
    over = {route.server: route for route in serving(config, 600)}
    assert not over["vLLM"].exact and "above vLLM's largest --max-lora-rank (512)" in over["vLLM"].how
    bias = {route.server: route for route in serving({**config, "bias": "lora_only"}, 2)}
    assert not bias["vLLM"].exact and not bias["llama.cpp"].exact and "bias=lora_only" in bias["vLLM"].how


# -- the command on a trained run -------------------------------------------------------------------------------------
SMALL = [
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=32",
    "learning_rate=5e-3",
    "num_epochs=1",
    "batch_size=4",
    "budget_warmup=0.1",
    "budget_final=0.2",
]

STOCK = """
import json, sys
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification
base_folder, lora, merged, inputs, out = sys.argv[1:]
input_ids = torch.tensor(json.load(open(inputs)))
with torch.no_grad():
    peft = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base_folder), lora).eval()
    whole = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    result = {"lora": peft(input_ids=input_ids).logits.tolist(), "merged": whole(input_ids=input_ids).logits.tolist(),
              "imported": sorted(name for name in sys.modules if name.startswith("adalora"))}
json.dump(result, open(out, "w"))
"""


@pytest.fixture(scope="module")
def finished_run(glue_root, tiny_model_dir, tmp_path_factory):
    from adalora_scores.cli import main

    run = tmp_path_factory.mktemp("export") / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "rte",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(glue_root / "rte"),
                "--output",
                str(run),
                *SMALL,
            ]
        )
        == 0
    )
    return run


def test_the_command_exports_a_run_that_stock_peft_and_transformers_load_alone(
    finished_run, tiny_model_dir, tmp_path, capsys
):
    from adalora_scores.cli import main
    from adalora_scores.engine.finished_run import load_run_model, open_run

    lora, uniform, merged = tmp_path / "lora", tmp_path / "uniform", tmp_path / "merged"
    capsys.readouterr()
    assert main(["export", str(finished_run), "--output", str(lora)]) == 0
    report = capsys.readouterr().out
    assert "LoRA adapter" in report and "the AdaLoRA adapter" in report and "kept rank" in report
    pattern = json.loads((finished_run / "rank_pattern.json").read_text())
    largest = max(entry["rank"] for entry in pattern.values())
    record = json.loads((lora / EXPORT_RECORD).read_text())  # a classifier: its head rules out vLLM and llama.cpp
    assert record["largest_rank"] == largest and record["vllm_max_lora_rank"] == vllm_max_lora_rank(largest)
    assert [record["servers"][name]["exact"] for name in ("PEFT", "vLLM", "llama.cpp")] == [True, False, False]
    assert f'PEFT: exact: PeftModel.from_pretrained(base_model, "{lora}")' in report
    assert "warning: vLLM: not this folder: it carries trained heads (modules_to_save: classifier, pooler" in report
    assert "vLLM serves LoRA adapters of generative models only" in report and "warning: llama.cpp:" in report
    assert (
        main(
            [
                "export",
                str(finished_run),
                "--output",
                str(uniform),
                "--uniform-rank",
                "--rank-choices",
                f"{largest + 1},16",
            ]
        )
        == 0
    )
    assert json.loads((uniform / "adapter_config.json").read_text())["r"] == largest + 1  # rounded up to a choice
    assert main(["export", str(finished_run), "--output", str(merged), "--merge"]) == 0
    assert sum(entry["rank"] for entry in pattern.values()) < 4 * len(pattern)  # ranks were pruned ...
    size = (lora / "adapter_model.safetensors").stat().st_size
    assert size < (finished_run / "adapter" / "adapter_model.safetensors").stat().st_size  # ... so it is smaller
    assert (lora / "tokenizer_config.json").is_file() and (merged / "config.json").is_file()

    config, task = open_run(finished_run, [], "export")
    _, model = load_run_model(finished_run, config, task)
    input_ids = torch.randint(4, model.config.vocab_size, (4, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
    (tmp_path / "inputs.json").write_text(json.dumps(input_ids.tolist()))
    script = tmp_path / "stock.py"
    script.write_text(STOCK)
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tiny_model_dir),
            str(lora),
            str(merged),
            str(tmp_path / "inputs.json"),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["imported"] == []  # stock PEFT and transformers alone
    for name in ("lora", "merged"):
        torch.testing.assert_close(torch.tensor(result[name]), expected, rtol=RTOL, atol=ATOL, msg=name)


def test_the_command_refuses_to_overwrite_and_to_export_a_lora_run(
    finished_run, glue_root, tiny_model_dir, tmp_path, capsys
):
    from adalora_scores.cli import main

    out = tmp_path / "lora"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", str(finished_run), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert main(["export", str(finished_run), "--output", str(out), "--overwrite", "--uniform-rank", "1"]) == 2
    assert "below the largest kept rank" in capsys.readouterr().err and (out / "keep.txt").is_file()  # untouched
    assert main(["export", str(finished_run), "--output", str(out), "learning_rate=1"]) == 2
    assert "export cannot change learning_rate" in capsys.readouterr().err
    assert main(["export", str(finished_run), "--output", str(out), "--overwrite", "--merge", "--llama-cpp"]) == 2
    assert "--llama-cpp apply to the LoRA adapter" in capsys.readouterr().err and (out / "keep.txt").is_file()
    assert main(["export", str(finished_run), "--output", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and not list(tmp_path.glob(".lora.export-*"))
    lora_run = tmp_path / "lora-run"
    assert (
        main(
            [
                "train",
                "--task",
                "rte",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(glue_root / "rte"),
                "--output",
                str(lora_run),
                "method=lora",
                *SMALL,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["export", str(lora_run), "--output", str(tmp_path / "x")]) == 2
    assert "already a standard PEFT LoRA adapter" in capsys.readouterr().err
