"""Run the code blocks of the README and the guides in ``docs/`` as a reader would, on this machine.

Every ```` ```bash ````, ```` ```sh ````, ```` ```shell ```` and ```` ```python ```` block is an example that runs
(:func:`collect_blocks`). Output and file contents use other fences (``text``, ``console``, ``yaml``, ``json``,
``csv``, ``toml``), which are not run; an input file an example needs is written by the example itself (a heredoc)
or, for data a reader brings, by the fixture below.

The blocks of one file run in order in one folder of their own (:class:`DocRun`), so a later block may use what an
earlier one made (``evaluate RUN`` after ``train``). Shell blocks are split into commands: ``adalora-scores ...``
runs in this process through ``adalora_scores.cli.main`` (the same code as the console script, without a fresh
interpreter per command), launchers (``torchrun``, ``accelerate launch``) and ``bash scripts/...`` run as
subprocesses, and any other command (``mkdir``, ``cat > FILE <<'EOF'``, ``cp``) runs in bash.

What a reader has that this machine has not is substituted, and only this (:data:`SUBSTITUTIONS`):

============================================  =====================================================================
in the docs                                   in the test
============================================  =====================================================================
``microsoft/deberta-v3-base`` (Hub model)     a tiny random DeBERTa-v2 (DeBERTa-v3's attention) with a word-level
                                              tokenizer, saved as a local folder
``Qwen/Qwen2.5-0.5B`` (Hub model)             a tiny random Qwen2 decoder with a chat template, saved likewise
``train`` without ``--model``                 ``--model`` the tiny DeBERTa (the default model is the Hub's)
GLUE/SQuAD ``train`` without ``--data``       ``--data`` a small local copy in the original layout (the Hub)
``causal_lm`` ``train``/``evaluate``/        ``task_options.max_new_tokens=4`` appended (generation shortened)
``predict``
``sweep paper`` / ``paper-tuned`` (hundreds   one run of the grid: ``--shard i/n`` becomes ``--shard i/100000``
of GPU runs on the Hub)                       (the i-th run alone, the first of the shard), with ``model=`` the tiny
                                              DeBERTa and ``data=`` the local copy of that run's task
``sweep metamath`` (Llama-3.2-3B, Hub data)   ``--dry-run`` appended: every run's config resolved and listed
``sweep ladder`` (80 MiniLM runs on tweets)   the ladder on the demo task: ``task=contrast_sentiment``, seeds 1,2,
                                              two learning rates, one epoch, rank 4 → 2, the tiny DeBERTa
``--nproc_per_node N``, ``--num_processes N``, 2 CPU processes (gloo), on a free port, one thread each
``num_processes: N`` in a launcher config
``accelerate launch`` with a DeepSpeed config  skipped where ``deepspeed`` is not installed (the reason is printed)
``bash scripts/gpu-check.sh`` (CUDA)          skipped without a CUDA device; ``--device cpu`` runs
``vllm serve ...``, ``ollama ...``            skipped where the server is not installed (the reason is printed)
``bash scripts/...``                          from the checkout, with this interpreter as ``PYTHON``
files the reader brings                       ``reviews/`` (CSV, 3 classes), ``math/`` (the guide's JSONL records),
                                              ``glue_data/SST-2/``, ``squad/`` (v2.0 JSON), ``my-local-model/``,
                                              and ``presets/`` (the examples run in the checkout)
============================================  =====================================================================

A block marked ``<!-- docs-test: not run ... -->`` on the line before it is not run; only the README's
``bash scripts/demo.sh`` and ``bash scripts/test.sh`` may carry the mark (``tests/project/test_docs.py`` checks that).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
EXECUTABLE = ("bash", "sh", "shell", "python")
NOT_RUN = "<!-- docs-test: not run"
GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
SQUAD_TASKS = ("squad", "squad_v2")
PAPER_SCALE_ONE_RUN = ("paper", "paper-tuned")
PAPER_SCALE_DRY_RUN = ("metamath",)
LADDER_ON_THE_DEMO_TASK = ["--seeds", "1,2", "task=contrast_sentiment", "learning_rate=[5e-3,2e-2]"]
LADDER_ON_THE_DEMO_TASK += [
    "num_epochs=1",
    "max_seq_length=32",
    "batch_size=32",
    "init_r=4",
    "target_r=2",
    "mask_interval=2",
]
"""What ``sweep ladder`` gets appended (with the tiny encoder as ``model=``): the whole ladder, small."""
ONE_RUN_OF = 100_000
"""``--shard i/ONE_RUN_OF`` is the i-th run alone of any grid with fewer runs."""
HUB_MODELS = {"microsoft/deberta-v3-base": "encoder", "Qwen/Qwen2.5-0.5B": "decoder"}
SUBSTITUTIONS = {
    **{name: f"the tiny local {kind} (Hub model)" for name, kind in HUB_MODELS.items()},
    "--nproc_per_node N, --num_processes N, num_processes: N": "2 (CPU processes, gloo)",
    "causal_lm generation": "task_options.max_new_tokens=4",
}
"""In the docs → in the test (the module docstring has the whole table)."""
SERVERS = {"vllm": "vLLM (a GPU inference server)", "ollama": "Ollama"}
"""Serving tools a guide shows: run where installed, else skipped with the reason printed."""


class MissingCapability(Exception):
    """A command this machine cannot run: no CUDA device, a package not installed. The message is the reason."""


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------- the blocks
@dataclass(frozen=True)
class Block:
    file: str
    """Relative to the checkout: ``README.md``, ``docs/tasks.md``."""
    line: int
    """1-based line of the opening fence."""
    language: str
    text: str
    """Dedented body."""
    not_run: bool = False

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


_FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)


def collect_blocks(path: Path, languages: tuple[str, ...] | None = EXECUTABLE) -> list[Block]:
    """The fenced blocks of ``path`` (of ``languages``; None: all), in order."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        language = match["language"]
        if languages is not None and language not in languages:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        body = textwrap.dedent(match["body"])
        blocks.append(Block(str(path.relative_to(ROOT)), line, language, body, before.startswith(NOT_RUN)))
    return blocks


def split_commands(script: str) -> list[str]:
    """A shell block as commands: continuation lines joined, a heredoc kept with its command, comments dropped."""
    lines, commands, current, i = script.splitlines(), [], [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if heredoc:
            while i < len(lines):
                current.append(lines[i])
                i += 1
                if current[-1].strip() == heredoc[1]:
                    break
        elif line.rstrip().endswith("\\"):
            continue
        commands.append("\n".join(current))
        current = []
    if current:
        commands.append("\n".join(current))
    return commands


def shell_words(command: str, env: dict[str, str] | None = None) -> list[str]:
    """The words bash makes of ``command`` (quotes, continuations, variables, comments)."""
    done = subprocess.run(
        ["bash", "-c", "printf '%s\\0' " + command], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.split("\0")[:-1]


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


# ---------------------------------------------------------------- what a reader brings
@dataclass
class Assets:
    """Models and data shared by every doc's folder (built once per session)."""

    root: Path
    encoder: Path = field(init=False)
    decoder: Path = field(init=False)

    def __post_init__(self) -> None:
        from conftest import WORDS, sentence, write_glue_folder

        from adalora_scores.demo.tiny_models import save_tiny_decoder, save_tiny_model

        rng = random.Random(0)
        self.reviews = self.root / "reviews"
        self.reviews.mkdir(parents=True)
        for name, count in (("train", 24), ("dev", 9)):
            rows = [f'"{sentence(rng)}",{("positive", "negative", "neutral")[i % 3]}' for i in range(count)]
            (self.reviews / f"{name}.csv").write_text("review,sentiment\n" + "\n".join(rows) + "\n", "utf-8")
        records = [
            json.loads(line)
            for block in collect_blocks(ROOT / "docs" / "tasks.md", ("json",))
            for line in block.text.splitlines()
            if '"prompt"' in line
        ]
        self.math = self.root / "math"
        self.math.mkdir()
        lines = "\n".join(json.dumps(record) for record in records * 8) + "\n"
        for name in ("train", "dev"):
            (self.math / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        texts = [*WORDS, *(row["prompt"] + row["completion"] for row in records)]
        self.encoder = save_tiny_model(self.root / "encoder", WORDS, "deberta-v2", max_position_embeddings=512)
        self.decoder = save_tiny_decoder(self.root / "decoder", texts, "qwen2", max_position_embeddings=1024)
        self.hub = self.root / "hub"
        for task in GLUE_TASKS:
            write_glue_folder(self.hub / task, task)
        from _squad import write_squad_folder

        write_squad_folder(self.hub / "squad", version_2=False)
        write_squad_folder(self.hub / "squad_v2", version_2=True)

    def model(self, kind: str) -> Path:
        return {"encoder": self.encoder, "decoder": self.decoder}[kind]

    def populate(self, folder: Path) -> None:
        """The files the examples assume in the reader's folder (the checkout)."""
        shutil.copytree(self.reviews, folder / "reviews")
        shutil.copytree(self.math, folder / "math")
        shutil.copytree(self.hub / "sst2", folder / "glue_data" / "SST-2")
        shutil.copytree(self.hub / "squad_v2", folder / "squad")
        (folder / "my-local-model").symlink_to(self.encoder)
        (folder / "presets").symlink_to(ROOT / "presets")


# ---------------------------------------------------------------- running one block
@dataclass
class Outcome:
    skipped: list[str] = field(default_factory=list)
    """Reasons of the commands that were not run (missing capabilities)."""
    ran: list[list[str]] = field(default_factory=list)
    """The commands that ran (``adalora-scores``, launchers, scripts), as argument lists after substitution."""
    prepared: list[str] = field(default_factory=list)
    """The other shell commands that ran (writing files, making folders)."""
    output: str = ""
    namespace: dict | None = None
    """A Python block's globals after it ran."""


class DocRun:
    """One doc file's folder, where its blocks run in order."""

    def __init__(self, path: Path, assets: Assets, folder: Path, checks=lambda block: []):
        """``checks(block)``: functions ``check(run, outcome)`` of what the block made, run right after it."""
        self.path, self.assets, self.folder, self.checks = path, assets, folder, checks
        folder.mkdir(parents=True)
        assets.populate(folder)
        self.blocks = collect_blocks(path)
        self.outcomes: dict[int, Outcome | BaseException] = {}

    # -- substitutions
    def substitute_text(self, text: str) -> str:
        for name, kind in HUB_MODELS.items():
            text = text.replace(name, str(self.assets.model(kind)))
        return re.sub(r"^(\s*num_processes:\s*)\d+", r"\g<1>2", text, flags=re.M)

    def adapt_cli(self, argv: list[str]) -> list[str]:
        """``adalora-scores`` arguments with the substitutions of the module docstring."""
        argv = list(argv)
        command = argv[0] if argv else ""
        if command == "train":
            task = (_option(argv, "--task") or "").lower()
            if "--model" not in argv:
                argv += ["--model", str(self.assets.encoder)]
            if "--data" not in argv and task in (*GLUE_TASKS, *SQUAD_TASKS):
                argv += ["--data", str(self.assets.hub / task)]
            if task == "causal_lm":
                argv += ["task_options.max_new_tokens=4"]
        elif command in ("evaluate", "predict"):
            metrics = Path(argv[1]) / "metrics.json"  # relative to the doc's folder, where the command runs
            if metrics.is_file() and json.loads(metrics.read_text())["task"] == "causal_lm":
                argv += ["task_options.max_new_tokens=4"]
        elif command == "sweep" and "--dry-run" not in argv and "--status" not in argv:
            spec = argv[1]
            if spec in PAPER_SCALE_DRY_RUN:
                argv += ["--dry-run"]
            elif spec == "ladder":
                argv += [*LADDER_ON_THE_DEMO_TASK, f"model={self.assets.encoder}"]
            elif spec in PAPER_SCALE_ONE_RUN:
                from adalora_scores.presets.files import SWEEP_PRESET_DIR

                shard = _option(argv, "--shard")
                index = int(shard.split("/")[0]) if shard else 1
                if shard:
                    position = argv.index("--shard")
                    del argv[position : position + 2]
                grid = yaml.safe_load((SWEEP_PRESET_DIR / f"{spec}.yaml").read_text())["grid"]
                task = grid["task"][0]  # runs are in task order: the first runs of the grid are its first task's
                argv += [
                    "--shard",
                    f"{index}/{ONE_RUN_OF}",
                    f"model={self.assets.encoder}",
                    f"data={self.assets.hub / task}",
                ]
        return argv

    # -- commands
    def _cli(self, argv: list[str], outcome: Outcome) -> None:
        from adalora_scores.cli import main

        argv = self.adapt_cli(argv)
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(argv)
        outcome.output += stdout.getvalue() + stderr.getvalue()
        outcome.ran.append(["adalora-scores", *argv])
        assert code == 0, f"adalora-scores {shlex.join(argv)} exited {code}:\n{outcome.output[-3000:]}"
        for expected in self._made_by(argv):
            assert expected.exists(), f"adalora-scores {shlex.join(argv)} did not write {expected}"

    def _made_by(self, argv: list[str]) -> list[Path]:
        """What a successful command leaves behind (checked after it ran)."""
        command = argv[0]
        if command == "train" and "--print-config" in argv:
            return []
        if command == "train":  # the run folder of --output, else of the --config file's output:
            output = (
                _option(argv, "--output")
                or yaml.safe_load((self.folder / _option(argv, "--config")).read_text())["output"]
            )
            return [self.folder / output / "metrics.json"]
        if command == "sweep" and "--dry-run" not in argv and "--status" not in argv:  # those two only read
            return [self.folder / _option(argv, "--output") / "sweep.yaml"]
        if command == "report":
            return [self.folder / argv[1] / "report.md"]
        if command == "export":
            made = "config.json" if "--merge" in argv else "adapter_config.json"
            return [self.folder / _option(argv, "--output") / made]
        if command == "evaluate":
            output = _option(argv, "--output")
            return [self.folder / (output or Path(argv[1]) / "evaluation") / "metrics.json"]
        if command == "predict":
            return [self.folder / _option(argv, "--output")]
        return []

    def _launch(self, argv: list[str], outcome: Outcome) -> None:
        """``torchrun ...`` or ``accelerate launch ...`` as 2 CPU processes."""
        launcher, rest = argv[0], argv[1:]
        if launcher == "accelerate":
            assert rest[0] == "launch", argv
            rest = rest[1:]
            config = _option(rest, "--config_file")
            if config and "DEEPSPEED" in (self.folder / config).read_text() and not has_module("deepspeed"):
                raise MissingCapability("DeepSpeed is not installed (pip install -e '.[deepspeed]')")
        module = rest.index("-m")
        options, program = rest[:module], rest[module:]
        for flag in ("--nproc_per_node", "--num_processes"):
            if flag in options:
                options[options.index(flag) + 1] = "2"
        if launcher == "torchrun":
            command = [sys.executable, "-m", "torch.distributed.run", "--master_port", str(_free_port()), *options]
        else:
            command = [
                str(Path(sys.executable).parent / "accelerate"),
                "launch",
                "--main_process_port",
                str(_free_port()),
                *options,
            ]
        assert program[:2] == ["-m", "adalora_scores.cli"], argv
        cli = self.adapt_cli(program[2:])
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        }
        done = subprocess.run(
            [*command, *program[:2], *cli], cwd=self.folder, env=env, capture_output=True, text=True, timeout=400
        )
        outcome.output += done.stdout + done.stderr
        outcome.ran.append(command + program[:2] + cli)
        assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        for expected in self._made_by(cli):
            assert expected.exists(), f"{shlex.join(argv)} did not write {expected}"

    def _script(self, argv: list[str], outcome: Outcome) -> None:
        """``bash scripts/NAME.sh ...``: from the checkout, with this interpreter."""
        if argv[1] == "scripts/gpu-check.sh" and "--device" not in argv and not has_cuda():
            raise MissingCapability("no CUDA device: the GPU check's GPU form (its --device cpu form runs)")
        env = {**os.environ, "PYTHON": sys.executable, "PYTHON_SET": "1"}
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
        outcome.output += done.stdout + done.stderr
        outcome.ran.append(argv)
        assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}"

    def _shell(self, command: str, outcome: Outcome) -> None:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command], cwd=self.folder, capture_output=True, text=True, timeout=60
        )
        outcome.output += done.stdout + done.stderr
        outcome.prepared.append(command)
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stderr[-2000:]}"

    def _run_shell_block(self, block: Block, outcome: Outcome) -> None:
        for command in split_commands(self.substitute_text(block.text)):
            first = command.split()[0]
            script = first == "bash" and "scripts/" in command
            try:
                if first in SERVERS and shutil.which(first) is None:
                    raise MissingCapability(f"{SERVERS[first]} is not installed here")
                if first in ("adalora-scores", "torchrun", "accelerate") or script:
                    argv = shell_words(command)
                    if first == "adalora-scores":
                        with _cwd(self.folder):
                            self._cli(argv[1:], outcome)
                    elif first == "bash":
                        self._script(argv, outcome)
                    else:
                        self._launch(argv, outcome)
                else:
                    self._shell(command, outcome)
            except MissingCapability as missing:
                shown = " ".join(command.split("#")[0].replace("\\\n", " ").split())
                outcome.skipped.append(f"{block.id}: `{shown}` not run: {missing}")

    def _run_python_block(self, block: Block, outcome: Outcome) -> None:
        namespace = {"__name__": "__docs__"}
        with _cwd(self.folder):
            exec(compile(self.substitute_text(block.text), block.id, "exec"), namespace)  # noqa: S102
        outcome.namespace = namespace

    def run(self, block: Block) -> Outcome:
        """Run ``block`` once (after the blocks before it); re-raise its failure for every later call."""
        for earlier in self.blocks:
            if earlier.line >= block.line:
                break
            if earlier.line not in self.outcomes:
                self.run(earlier)
            if isinstance(self.outcomes[earlier.line], BaseException):
                raise AssertionError(f"an earlier example, {earlier.id}, failed") from self.outcomes[earlier.line]
        if block.line in self.outcomes:
            result = self.outcomes[block.line]
            if isinstance(result, BaseException):
                raise result
            return result
        outcome = Outcome()
        try:
            with fresh_registries():
                if block.not_run:
                    pass
                elif block.language == "python":
                    self._run_python_block(block, outcome)
                else:
                    self._run_shell_block(block, outcome)
                for check in self.checks(block):
                    with _cwd(self.folder):
                        check(self, outcome)
        except BaseException as error:  # noqa: BLE001 (kept for the blocks after it)
            self.outcomes[block.line] = error
            raise
        for reason in outcome.skipped:
            print(reason)
            warnings.warn(reason, stacklevel=2)
        self.outcomes[block.line] = outcome
        return outcome


@contextlib.contextmanager
def _cwd(folder: Path):
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def fresh_registries():
    """What a block registers (its own score, a plugin's) is gone after it, as a fresh process would have it."""
    from adalora_scores.plugins import loading as plugins
    from adalora_scores.plugins.registry import Registry

    names = {kind: set(registry.names()) for kind, registry in Registry.all().items()}
    loaded, entry_points = dict(plugins._loaded), plugins._entry_points_loaded
    try:
        yield
    finally:
        for record in plugins.loaded_plugins():
            if (record.kind, record.spec) not in loaded:
                sys.modules.pop(record.module, None)
        for kind, registry in Registry.all().items():
            for name in set(registry.names()) - names.get(kind, set()):
                registry.unregister(name)
        plugins._loaded.clear()
        plugins._loaded.update(loaded)
        plugins._entry_points_loaded = entry_points
