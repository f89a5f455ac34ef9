"""Plugins: a user's score file reaches ``train``, ``sweep``, ``scores``, ``evaluate`` and ``--resume`` through
``--plugin``, sweep files and train presets; entry points of group ``adalora_scores.plugins`` load by themselves; a
run folder's ``plugins.json`` imports them again, and a missing or changed one is named."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _registries import forget_plugins

import adalora_scores
import adalora_scores.engine.loop as loop_module
from adalora_scores.cli import build_parser, main
from adalora_scores.plugins import loading as plugins
from adalora_scores.plugins.loading import PluginChangedWarning, PluginError, load_entry_points, load_plugins
from adalora_scores.presets.files import load_preset
from adalora_scores.presets.overrides import resolve_config

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

SCORE_FILE = '''
from adalora_scores import Score, register_score


@register_score("{name}")
class LastAbsGrad(Score):
    """s(w) = |g| of the last step (a user's plugin score)."""

    statistics = ("last_abs_grad",)

    def update(self, param, grad):
        self.last_abs_grad.copy_(grad.abs())

    def element_scores(self, param):
        return self.last_abs_grad
'''


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Each test starts and ends with no plugin imported."""
    forget_plugins()
    yield
    forget_plugins()


def _score_file(folder: Path, name: str = "last_abs_grad", filename: str = "my_score.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(SCORE_FILE.format(name=name), encoding="utf-8")
    return path


def _train(glue_root, tiny_model_dir, output: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--task",
        "rte",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(glue_root / "rte"),
        "--output",
        str(output),
        *SMALL,
        *extra,
    ]


# ---------------------------------------------------------------- load_plugins on its own
def test_a_file_imported_twice_registers_its_score_once(tmp_path, monkeypatch):
    path = _score_file(tmp_path / "plugins")
    first = load_plugins([path])
    monkeypatch.chdir(tmp_path)
    again = load_plugins(["plugins/my_score.py", "./plugins/../plugins/my_score.py"])  # the same file, relative
    assert again == [first[0], first[0]] and len(plugins.loaded_plugins()) == 1
    record = first[0]
    assert record.kind == "file" and record.spec == str(path.resolve()) and record.scores == ("last_abs_grad",)
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.module in sys.modules and "last_abs_grad" in adalora_scores.list_scores()
    assert load_plugins([Path("plugins/my_score.py")], base=tmp_path) == first  # relative to a given folder


def test_a_module_plugin_and_the_errors_that_name_the_plugin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _score_file(tmp_path, "module_score", "user_scores_module.py")
    [record] = load_plugins(["user_scores_module"])
    assert (record.kind, record.spec, record.scores) == ("module", "user_scores_module", ("module_score",))

    with pytest.raises(FileNotFoundError, match=r"--plugin .*missing\.py: no such file.*\.py file"):
        load_plugins([tmp_path / "missing.py"], where="--plugin")
    with pytest.raises(PluginError, match=r"no_such_scores_module: no module named 'no_such_scores_module'.*\.py"):
        load_plugins(["no_such_scores_module"])

    broken = tmp_path / "broken.py"
    broken.write_text(SCORE_FILE.format(name="half_registered") + "\n1 / 0\n", encoding="utf-8")
    with pytest.raises(PluginError, match=r"broken\.py failed while importing \(ZeroDivisionError: division by zero"):
        load_plugins([broken])
    assert "half_registered" not in adalora_scores.list_scores()  # what it registered before failing is undone
    broken.write_text(SCORE_FILE.format(name="half_registered"), encoding="utf-8")
    assert load_plugins([broken])[0].scores == ("half_registered",)  # fixed, it imports

    clash = _score_file(tmp_path / "other", "module_score", "clash.py")  # the name user_scores_module registered
    with pytest.raises(
        PluginError,
        match=r"clash\.py failed.*already registered.*plugin user_scores_module "
        r"registers that name too: rename it",
    ):
        load_plugins([clash])
    with pytest.raises(PluginError, match=r"'fisher' is already registered"):  # a built-in name
        load_plugins([_score_file(tmp_path / "third", "fisher")])


def test_a_train_preset_and_a_sweep_file_import_their_plugins(tmp_path):
    folder = tmp_path / "presets"
    _score_file(folder / "scores")
    preset = folder / "mine.yaml"
    preset.write_text(yaml.safe_dump({"plugins": ["scores/my_score.py"], "defaults": {"score": "last_abs_grad"}}))
    values = load_preset(str(preset), "rte")
    assert values == {"score": "last_abs_grad"}  # plugins is no config value
    config = resolve_config(str(preset), "rte", {"task": "rte"}, [])
    assert config.score == "last_abs_grad" and "last_abs_grad" in adalora_scores.list_scores()
    assert plugins.loaded_plugins()[0].spec == str((folder / "scores" / "my_score.py").resolve())

    wrong = folder / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"defaults": {"plugins": ["scores/my_score.py"]}}))
    with pytest.raises(ValueError, match="plugins is a section of its own"):
        load_preset(str(wrong), "rte")
    listed = folder / "listed.yaml"
    listed.write_text(yaml.safe_dump({"plugins": {"a": 1}, "defaults": {}}))
    with pytest.raises(ValueError, match=r"plugins must be a list of \.py file paths"):
        load_preset(str(listed), "rte")


# ---------------------------------------------------------------- the command line
class SimulatedKill(Exception):
    pass


@pytest.mark.parametrize(
    "command",
    [
        ["scores"],
        ["train", "--task", "rte", "--output", "o"],
        ["evaluate", "run"],
        ["sweep", "paper", "--output", "o"],
        ["report", "o"],
        ["demo"],
    ],
)
def test_every_command_takes_repeated_plugins(command):
    assert build_parser().parse_args([*command, "--plugin", "a.py", "--plugin", "b.module"]).plugin == [
        "a.py",
        "b.module",
    ]


def test_a_missing_plugin_stops_the_command_with_its_name(tmp_path, capsys):
    assert main(["train", "--task", "rte", "--output", str(tmp_path / "run"), "--plugin", "absent_score.py"]) == 2
    error = capsys.readouterr().err
    assert f"--plugin {Path.cwd() / 'absent_score.py'}: no such file" in error, error
    assert not (tmp_path / "run").exists()


def _kill_at(monkeypatch, step: int) -> None:
    original = loop_module._optimizer_step

    def killed(session, progress, *rest):
        original(session, progress, *rest)
        if progress.step == step:
            raise SimulatedKill

    monkeypatch.setattr(loop_module, "_optimizer_step", killed)


def test_train_evaluate_and_resume_with_a_plugin_score(glue_root, tiny_model_dir, tmp_path, monkeypatch, capsys):
    path = _score_file(tmp_path / "mine")
    assert main(["scores", "--plugin", str(path)]) == 0
    assert "last_abs_grad" in capsys.readouterr().out.split()
    forget_plugins()

    run = tmp_path / "run"
    assert main(_train(glue_root, tiny_model_dir, run, "--plugin", str(path), "--score", "last_abs_grad")) == 0
    [record] = json.loads((run / "plugins.json").read_text())
    assert record == {
        "kind": "file",
        "spec": str(path.resolve()),
        "module": record["module"],
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "scores": ["last_abs_grad"],
        "tasks": [],
    }
    assert json.loads((run / "metrics.json").read_text())["score"] == "last_abs_grad"

    forget_plugins()  # as in a new process: evaluate imports the plugin from the run folder
    assert main(["evaluate", str(run)]) == 0
    assert "last_abs_grad" in adalora_scores.list_scores()
    recorded = json.loads((run / "metrics.json").read_text())["eval"]["dev"]
    assert json.loads((run / "evaluation" / "metrics.json").read_text())["eval"]["dev"] == pytest.approx(recorded)

    forget_plugins()
    path.write_text(path.read_text() + "# edited\n")
    with pytest.warns(PluginChangedWarning, match=r"my_score\.py changed since run"):
        assert main(["evaluate", str(run), "--overwrite"]) == 0

    forget_plugins()
    moved = path.rename(tmp_path / "moved.py")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert f"plugin file {path.resolve()} (registering score 'last_abs_grad'), which no longer exists" in error
    assert "pass --plugin NEW_PATH" in error
    assert main(["evaluate", str(run), "--overwrite", "--plugin", str(moved)]) == 0

    forget_plugins()  # --resume: killed at step 3 of 6 with a checkpoint at step 2, resumed in a "new process"
    killed = tmp_path / "killed"
    _kill_at(monkeypatch, 3)
    with pytest.raises(SimulatedKill):
        main(
            _train(
                glue_root, tiny_model_dir, killed, "--plugin", str(moved), "score=last_abs_grad", "checkpoint_every=2"
            )
        )
    monkeypatch.undo()
    forget_plugins()
    assert (
        main([*_train(glue_root, tiny_model_dir, killed, "score=last_abs_grad", "checkpoint_every=2"), "--resume"])
        == 0
    )
    assert json.loads((killed / "metrics.json").read_text())["resumed_from_step"] == 2
    assert json.loads((killed / "plugins.json").read_text())[0]["spec"] == str(moved.resolve())


def test_a_sweep_file_lists_a_plugin_and_every_run_records_it(glue_root, tiny_model_dir, tmp_path):
    _score_file(tmp_path / "study" / "plugins")
    spec = {
        "plugins": ["plugins/my_score.py"],  # relative to the sweep file, not to the current folder
        "grid": {"task": ["rte"], "score": ["last_abs_grad", "sensitivity"], "seed": [1]},
        "set": {
            "model": str(tiny_model_dir),
            "init_r": 4,
            "target_r": 2,
            "mask_interval": 1,
            "max_seq_length": 32,
            "num_epochs": 1,
            "batch_size": 8,
        },
        "data": str(glue_root),
    }
    sweep_file = tmp_path / "study" / "grid.yaml"
    sweep_file.write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    assert main(["sweep", str(sweep_file), "--output", str(results)]) == 0
    expected = str((tmp_path / "study" / "plugins" / "my_score.py").resolve())
    for name in ("rte__last_abs_grad__seed1", "rte__sensitivity__seed1"):
        assert [r["spec"] for r in json.loads((results / name / "plugins.json").read_text())] == [expected], name
    assert json.loads((results / "rte__last_abs_grad__seed1" / "metrics.json").read_text())["score"] == (
        "last_abs_grad"
    )
    assert main(["report", str(results), "--no-plots", "--plugin", expected]) == 0
    assert "last_abs_grad" in (results / "report.md").read_text()


def test_a_run_without_plugins_writes_no_record(glue_root, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    (run).mkdir()
    (run / "plugins.json").write_text("[]")  # left by an earlier run that --overwrite replaces
    assert main([*_train(glue_root, tiny_model_dir, run), "--overwrite"]) == 0
    assert not (run / "plugins.json").exists()


# ---------------------------------------------------------------- entry points
def _distribution(site: Path, name: str, module: str, body: str) -> None:
    """A fake installed distribution: ``<name>-1.0.dist-info`` with an entry point of group adalora_scores.plugins
    that names ``module``, and the module itself."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[adalora_scores.plugins]\n{name}_scores = {module}\n")
    (site / f"{module}.py").write_text(body, encoding="utf-8")


def test_an_installed_entry_point_loads_by_itself(tmp_path):
    site = tmp_path / "site"
    _distribution(site, "fake_scores", "fake_scores_plugin", SCORE_FILE.format(name="entry_point_score"))
    source = str(Path(adalora_scores.__file__).parents[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([source, str(site)])}
    done = subprocess.run(
        [sys.executable, "-m", "adalora_scores.cli", "scores"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "entry_point_score" in done.stdout.split(), done.stdout


def test_a_broken_entry_point_names_its_distribution(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _distribution(site, "broken_scores", "broken_scores_plugin", "raise RuntimeError('needs a GPU')\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError) as error:
        load_entry_points()
    message = str(error.value)
    assert "RuntimeError: needs a GPU" in message and "'broken_scores_scores'" in message, message
    assert "distribution 'broken_scores'" in message and "pip uninstall broken_scores" in message, message


def test_print_config_lists_the_plugins_so_the_printed_file_runs_elsewhere(tmp_path, capsys):
    """A train YAML's plugins (relative to it) and --plugin files are printed as absolute paths; the printed file,
    moved to another folder, imports them again and resolves to the same config."""
    _score_file(tmp_path / "project")
    other = _score_file(tmp_path / "elsewhere", name="other_abs_grad", filename="other.py")
    (tmp_path / "project" / "run.yaml").write_text(
        "plugins: [./my_score.py]\ndefaults: {task: rte, score: last_abs_grad}\n"
    )
    argv = ["train", "--config", str(tmp_path / "project" / "run.yaml"), "--plugin", str(other), "--print-config"]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert sorted(printed["plugins"]) == sorted([str(tmp_path / "project" / "my_score.py"), str(other)])
    expected = resolve_config(str(tmp_path / "project" / "run.yaml"), None, {}, [])
    forget_plugins()
    assert "last_abs_grad" not in adalora_scores.list_scores()
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "printed.yaml").write_text(yaml.safe_dump(printed))
    assert resolve_config(str(tmp_path / "moved" / "printed.yaml"), None, {}, []) == expected
    assert {"last_abs_grad", "other_abs_grad"} <= set(adalora_scores.list_scores())
