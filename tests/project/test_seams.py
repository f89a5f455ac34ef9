"""The seams and names of the package: PEFT in one folder, one vocabulary with aliases, train presets apart from
sweep files, the task registry, module types, and run folders that outlive the code."""

from __future__ import annotations

import ast
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import adalora_scores
from adalora_scores.cli import main
from adalora_scores.config import CONFIG_FORMAT, TrainConfig
from adalora_scores.engine.module_types import matrix_position, module_type
from adalora_scores.presets.files import SWEEP_PRESET_DIR, TRAIN_PRESET_DIR
from adalora_scores.presets.overrides import resolve_config
from adalora_scores.runs.files import CONFIG_FILE, config_changes, read_config
from adalora_scores.tasks import TASKS, TaskBase, get_task, list_tasks, register_task

PACKAGE = Path(adalora_scores.__file__).parent
FROZEN = Path(__file__).parents[1] / "fixtures" / "run-folders-v1"


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_only_the_adapter_package_imports_peft():
    importers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "peft" in _imports(p)]
    assert importers and all(name.startswith("adapter/") for name in importers), importers


def test_allocation_names_nothing_of_peft():
    for path in (PACKAGE / "allocation").glob("*.py"):
        text = path.read_text().lower()
        for word in ("peft", "lora_", "rank_pattern"):
            assert not re.search(rf"(?<![a-z]){word}", text), f"{path.name} mentions {word!r}"


def test_scores_do_not_import_allocation():
    """No cycle between packages: allocation imports scores, never the other way round."""
    for path in (PACKAGE / "scores").glob("*.py"):
        tree = ast.parse(path.read_text())
        runtime = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module]
        assert not [n.module for n in runtime if n.module.startswith("adalora_scores.allocation")], path.name


# -- one vocabulary --------------------------------------------------------------------------------------------------
def test_peft_schedule_names_are_aliases_everywhere():
    base = {"task": "rte"}
    by_alias = resolve_config(None, "rte", base, ["tinit=3", "tfinal=0.25", "deltaT=7", "warmup_ratio=0.05"])
    by_name = resolve_config(
        None, "rte", base, ["budget_warmup=3", "budget_final=0.25", "mask_interval=7", "lr_warmup_ratio=0.05"]
    )
    assert by_alias == by_name
    assert (by_name.budget_warmup, by_name.budget_final, by_name.mask_interval) == (3, 0.25, 7)
    assert by_name.lr_warmup_ratio == 0.05
    flags = resolve_config(None, "rte", {**base, "deltaT": 4}, [])
    assert flags.mask_interval == 4


def test_an_alias_and_its_field_with_different_values_is_an_error(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"kind": "train", "defaults": {"tinit": 5, "budget_warmup": 6}}))
    with pytest.raises(ValueError, match="sets budget_warmup twice"):
        resolve_config(str(preset), "rte", {"task": "rte"}, [])


# -- presets and sweep files live apart -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEP_PRESET_DIR.glob("*.yaml")))
def test_train_refuses_a_sweep_file(name, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", name, "--task", "sst2", "--output", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is a sweep file" in error and f"adalora-scores sweep {name}" in error
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(p.stem for p in TRAIN_PRESET_DIR.glob("*.yaml")))
def test_sweep_refuses_a_train_preset(name, tmp_path, capsys):
    assert main(["sweep", name, "--output", str(tmp_path / "sweep")]) == 2
    error = capsys.readouterr().err
    assert "is a train preset" in error and "adalora-scores train --config" in error
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_file_given_by_path_is_refused_as_a_train_preset(tmp_path, capsys):
    spec = tmp_path / "grid.yaml"  # no `kind`: recognised by its grid
    spec.write_text(yaml.safe_dump({"grid": {"task": ["rte"], "score": ["fisher"], "seed": [1]}}))
    assert main(["train", "--config", str(spec), "--task", "rte", "--output", str(tmp_path / "run")]) == 2
    assert "is a sweep file" in capsys.readouterr().err


# -- the task registry ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_tasks())
def test_every_registered_task_has_the_interface(name):
    task = get_task(name)
    assert isinstance(task, TaskBase) and task.name == name
    assert task.eval_splits and task.main_metric and task.output_names
    assert isinstance(task.expected_data(), str) and task.expected_data()


def test_a_duplicate_task_name_fails_loudly():
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("rte"))
    with pytest.raises(TypeError, match="is not a task"):
        register_task(object())


def test_the_demo_task_has_its_own_name():
    task = get_task("contrast_sentiment")
    data = task.load(None)
    assert (len(data.train), len(data.evals["dev"])) == (480, 240)
    assert sum(example.label for example in data.train) == 240  # twins: balanced labels


@pytest.fixture
def parity_task():
    """A task registered for one test, and unregistered after it."""
    from adalora_scores.tasks import Example, GlueTask, TaskData

    @dataclass(frozen=True)
    class Parity(GlueTask):
        def load(self, data):
            words = ("cat", "dog", "mat", "red")
            examples = [Example(" ".join(words[: 1 + i % 4]), None, i % 2) for i in range(24)]
            return TaskData(examples[:16], {"dev": examples[16:]})

    yield register_task(Parity("test_parity", ("sentence",), ("sentence",), "label", ("0", "1"), *("accuracy",) * 2))
    TASKS.unregister("test_parity")


def test_a_task_defined_in_one_file_registers_and_trains(parity_task, tmp_path, tiny_model_dir):
    """A new task is one file: here a class with the interface (built on the GLUE machinery), registered once."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "test_parity",
                "--model",
                str(tiny_model_dir),
                "--output",
                str(out),
                "num_epochs=2",
                "batch_size=4",
                "init_r=2",
                "target_r=1",
                "mask_interval=1",
            ]
        )
        == 0
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["task"] == "test_parity"


# -- module types ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bert.encoder.layer.3.attention.self.query.lora_E.default", (3, "q")),
        ("bert.encoder.layer.0.attention.output.dense.lora_E.default", (0, "o")),
        ("bert.encoder.layer.1.intermediate.dense.lora_E.default", (1, "f1")),
        ("bert.encoder.layer.1.output.dense.lora_E.default", (1, "f2")),
        ("deberta.encoder.layer.11.attention.self.key_proj.lora_E.default", (11, "k")),
        ("deberta.encoder.layer.2.attention.self.value_proj.lora_E.default", (2, "v")),
        ("model.layers.5.self_attn.o_proj.lora_E.default", (5, "o")),
        ("model.layers.5.mlp.gate_proj.lora_E.default", (5, "gate")),
        ("model.layers.5.mlp.up_proj.lora_E.default", (5, "up")),
        ("model.layers.5.mlp.down_proj.lora_E.default", (5, "down")),
        ("transformer.h.4.attn.c_attn.lora_E.default", (4, "qkv")),
        ("transformer.h.4.attn.c_proj.lora_E.default", (4, "o")),
        ("transformer.h.4.mlp.c_fc.lora_E.default", (4, "f1")),
        ("transformer.h.4.mlp.c_proj.lora_E.default", (4, "f2")),
        ("model.decoder.layers.0.self_attn.out_proj.lora_E.default", (0, "o")),
        ("model.decoder.layers.0.fc2.lora_E.default", (0, "f2")),
        ("model.layers.2.self_attn.qkv_proj.lora_E.default", (2, "qkv")),
        ("model.layers.2.mlp.gate_up_proj.lora_E.default", (2, "gate_up")),
        ("bert.pooler.dense.lora_E.default", None),
    ],
)
def test_module_types_cover_encoders_and_decoders(name, expected):
    assert matrix_position(name) == expected
    assert module_type(name) == (None if expected is None else expected[1])


# -- the shared tiny builder ----------------------------------------------------------------------------------------
def test_the_tiny_builder_is_deterministic(tmp_path):
    import torch

    from adalora_scores.demo.tiny_models import save_tiny_model

    first = save_tiny_model(tmp_path / "a", ["the cat sat", "a dog ran"], "deberta-v2")
    second = save_tiny_model(tmp_path / "b", ["a dog ran", "the cat sat"], "deberta-v2")
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    from safetensors.torch import load_file

    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- run folders that outlive the code ------------------------------------------------------------------------------
def _frozen_setup(tmp_path: Path, monkeypatch) -> TrainConfig:
    """The frozen folders' model and data at the same relative paths, and today's config with their values."""
    from adalora_scores.demo.tiny_models import save_tiny_model
    from adalora_scores.tasks.contrast import make_examples, write_contrast_task

    monkeypatch.chdir(tmp_path)
    write_contrast_task("data/sst2", train=64, dev=16)
    sentences = [sentence for sentence, _ in make_examples(64, 0)]
    save_tiny_model("model", sentences, hidden_size=64, num_attention_heads=4, intermediate_size=128)
    for name in ("finished", "interrupted"):
        shutil.copytree(FROZEN / name, tmp_path / "runs" / name)
    given = {"task": "sst2", "model": "model", "data": "data/sst2", "score": "gsnr"}
    return resolve_config(
        None,
        "sst2",
        given,
        [
            "num_epochs=2",
            "batch_size=8",
            "max_seq_length=32",
            "init_r=4",
            "target_r=2",
            "budget_warmup=0.1",
            "budget_final=0.2",
            "mask_interval=2",
            "learning_rate=3e-3",
            "lr_warmup_ratio=0.1",
            "checkpoint_every=4",
        ],
    )


def test_a_folder_of_the_old_format_still_counts_as_finished(tmp_path, monkeypatch):
    from adalora_scores.study.grid import Run
    from adalora_scores.study.sweep import run_status

    config = _frozen_setup(tmp_path, monkeypatch)
    saved = read_config(tmp_path / "runs" / "finished")
    assert "format_version" not in saved and "tinit" in saved  # really the old format
    assert config_changes(saved, config) == []
    run = Run("finished", config, {"task": "sst2", "score": "gsnr", "seed": 1})
    assert run_status(tmp_path / "runs", run) == "done"
    changed = Run("finished", TrainConfig(**{**config.to_dict(), "mask_interval": 3}), run.grid_values)
    assert run_status(tmp_path / "runs", changed) == "changed"
    new_field_changed = TrainConfig(**{**config.to_dict(), "gradient_checkpointing": True})
    assert [
        c[0]
        for c in config_changes({k: v for k, v in saved.items() if k != "gradient_checkpointing"}, new_field_changed)
    ] == ["gradient_checkpointing"]
    del saved["gradient_checkpointing"]  # a field the old version did not have, at its default today: no change
    assert config_changes(saved, config) == []


def test_a_folder_of_the_old_format_still_resumes(tmp_path, monkeypatch):
    from adalora_scores.engine.train import train

    config = _frozen_setup(tmp_path, monkeypatch)
    folder = tmp_path / "runs" / "interrupted"
    metrics = train(config, folder, resume=True)
    assert metrics["resumed_from_step"] == 8 and metrics["steps"] == 16
    steps = [yaml.safe_load(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 17))
    assert (folder / "metrics.json").is_file() and not (folder / "checkpoint.pt").exists()


def test_config_files_carry_a_format_version_and_newer_ones_are_refused(tmp_path):
    from adalora_scores.runs.files import write_config

    write_config(tmp_path, {"task": "rte"})
    assert read_config(tmp_path)["format_version"] == CONFIG_FORMAT
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump({"format_version": CONFIG_FORMAT + 1, "task": "rte"}))
    with pytest.raises(ValueError, match="newer than this adalora-scores reads"):
        read_config(tmp_path)
