"""The version lock: ``constraints.txt`` pins every package that set-up installs, each pin lies inside
``pyproject.toml``'s range, and set-up refuses what it does not know. ``scripts/install-torch.sh`` takes the pinned
torch from PyTorch's CPU wheel index when that answers in time, else from pip's default index, saying so (checked
with a pip that records its arguments, against a local index that answers, a closed port and one that never
answers)."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _installed_requirements() -> list[Requirement]:
    """What ``scripts/setup.sh`` installs: the dependencies and the ``test`` and ``demo`` extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [Requirement(text) for text in [*project["dependencies"], *extras["test"], *extras["demo"]]]


def test_every_installed_requirement_is_locked_inside_its_range():
    pins = _locked()
    for requirement in _installed_requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch":  # set-up pins the CPU build itself (or keeps a CUDA build installed first)
            assert name not in pins
            continue
        assert name in pins, f"{requirement.name} is not in constraints.txt: re-lock with bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])


def test_the_lock_names_its_python_and_pins_no_gpu_build():
    text = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("# python: ")]
    assert len(header) == 1 and header[0].removeprefix("# python: ").count(".") == 1
    assert not [name for name in _locked() if name.startswith(("nvidia-", "triton", "torch"))]


def test_setup_refuses_an_unknown_argument():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh"), "--newest"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "unknown argument '--newest' (the only one is --latest)" in done.stderr


# -- the torch index ------------------------------------------------------------------------------------------------
TORCH = "torch==2.13.0"


def _recording_venv(folder: Path) -> Path:
    """A virtual environment whose ``pip`` writes its arguments to ``pip-args`` instead of installing, and whose
    ``python`` is this interpreter."""
    binaries = folder / "bin"
    binaries.mkdir(parents=True)
    (binaries / "python").symlink_to(sys.executable)
    pip = binaries / "pip"
    pip.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$(dirname "$0")/pip-args"\n', encoding="utf-8")
    pip.chmod(0o755)
    return folder


def _install_torch(venv: Path, index: str, timeout: str = "2") -> tuple[subprocess.CompletedProcess, float, list]:
    """Run install-torch.sh against ``index``: its result, its seconds, and the arguments pip got."""
    env = {**os.environ, "TORCH_INDEX_URL": index, "TORCH_INDEX_TIMEOUT": timeout}
    start = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-torch.sh"), str(venv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - start, (venv / "bin" / "pip-args").read_text().splitlines()


class _Index(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_torch_comes_from_the_cpu_index_when_it_answers(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
        done, _, arguments = _install_torch(_recording_venv(tmp_path / "venv"), index)
    finally:
        server.shutdown()
    assert done.returncode == 0 and done.stderr == ""
    assert arguments == ["install", "--quiet", "--index-url", index, TORCH]


def test_torch_comes_from_the_default_index_when_the_cpu_index_is_unreachable_and_setup_says_so(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/whl/cpu"
    with socket.socket() as silent:  # a port that takes the connection and never answers: the timeout decides
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        never = f"http://127.0.0.1:{silent.getsockname()[1]}/whl/cpu"
        for number, index in enumerate((refused, never)):
            done, seconds, arguments = _install_torch(_recording_venv(tmp_path / f"venv{number}"), index, timeout="1")
            assert done.returncode == 0 and arguments == ["install", "--quiet", TORCH]
            assert f"PyTorch's CPU wheel index ({index}) did not answer within 1 s" in done.stderr
            assert "from pip's default index instead" in done.stderr and "TORCH_INDEX_URL" in done.stderr
            assert seconds < 10
