"""The version lock: ``constraints.txt`` pins every package that set-up installs, each pin lies inside
``pyproject.toml``'s range, and set-up refuses what it does not know."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]

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
    done = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--newest"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2 and "unknown argument '--newest' (the only one is --latest)" in done.stderr
