"""One version story: ``pyproject.toml``'s version, ``adalora_scores.__version__``, the ``CHANGELOG.md`` headings and
the run-folder format numbers of ``CONFIG_FORMAT`` agree. Read from the files (no import of the package)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "src" / "adalora_scores"
HEADING = re.compile(r"^## (?P<version>\d+\.\d+\.\d+) \((?P<when>unreleased|\d{4}-\d{2}-\d{2})\)$")


def _pyproject_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version = "([^"]+)"$', project, re.M).group(1)


HISTORY = "## Measurement history"
"""The one ``## `` heading that is not a version: the earlier figures of the benchmarks, after every version."""


def _headings() -> list[tuple[str, str]]:
    """``(version, "unreleased" or date)`` of every ``## `` heading, top first; any other ``## `` heading fails, but
    :data:`HISTORY` as the last."""
    lines = [line for line in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").splitlines() if line[:3] == "## "]
    if lines and lines[-1] == HISTORY:
        lines = lines[:-1]
    for line in lines:
        assert HEADING.match(line), (
            f"CHANGELOG.md heading {line!r}: write '## X.Y.Z (unreleased)' or '## X.Y.Z (date)'"
        )
    return [(HEADING.match(line)["version"], HEADING.match(line)["when"]) for line in lines]


def _module_constant(path: Path, name: str) -> tuple[object, str | None]:
    """The value of a module-level constant and the docstring below it, from the source."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for statement, following in zip(body, [*body[1:], None], strict=True):
        if isinstance(statement, ast.Assign) and [ast.unparse(target) for target in statement.targets] == [name]:
            docstring = following.value.value if isinstance(following, ast.Expr) else None
            return ast.literal_eval(statement.value), docstring
    raise AssertionError(f"{path.name} has no {name}")


def test_the_version_is_the_top_changelog_heading_and_only_that_may_be_unreleased():
    """A finished version: pyproject.toml says X.Y.Z and the top heading is X.Y.Z with its date. Work towards a
    version: pyproject.toml says X.Y.Z.devN and the top heading is 'X.Y.Z (unreleased)'."""
    version = _pyproject_version()
    headings = _headings()
    assert _module_constant(PACKAGE / "__init__.py", "__version__")[0] == version
    top_version, top_when = headings[0]
    expected = rf"{re.escape(top_version)}\.dev\d+" if top_when == "unreleased" else re.escape(top_version)
    assert re.fullmatch(expected, version), (
        f"pyproject.toml's version {version!r} does not match CHANGELOG.md's top "
        f"heading '## {top_version} ({top_when})'"
    )
    assert [when for _, when in headings[1:]].count("unreleased") == 0, "only the top heading may be unreleased"
    versions = [tuple(int(part) for part in number.split(".")) for number, _ in headings]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions), versions
    dates = [when for _, when in headings if when != "unreleased"]
    assert dates == sorted(dates, reverse=True), dates


def test_config_format_names_changelog_versions():
    """Every format 1 … CONFIG_FORMAT is described with the versions that wrote it, each of which has a heading,
    and the current format is the top heading's."""
    current, docstring = _module_constant(PACKAGE / "config.py", "CONFIG_FORMAT")
    text = " ".join(docstring.split())
    headings = {number.rsplit(".", 1)[0] for number, _ in _headings()}  # 0.3.0 → 0.3
    named = {}
    for number in range(1, current + 1):
        description = re.search(rf"\b{number}(?: \(no key\))?: (.*?)(?=\b{number + 1}(?: \(no key\))?: |$)", text)
        assert description, f"CONFIG_FORMAT's docstring does not describe format {number}"
        named[number] = re.findall(r"\b(\d+\.\d+)\b", description[1].split(",")[0])
        assert named[number], f"format {number}: name the adalora-scores version(s) that write it"
        for version in named[number]:
            assert version in headings, f"format {number} names adalora-scores {version}, which CHANGELOG.md lacks"
    assert named[current][-1] == _headings()[0][0].rsplit(".", 1)[0], named
