"""The one registry type: registration, duplicate names, near-miss suggestions, keys and listings."""

from __future__ import annotations

import pytest

from adalora_scores.plugins.registry import Registry


@pytest.fixture
def colours():
    registry = Registry("colour_test", key=lambda name: name.lower().replace("-", ""), describe=str.upper)
    yield registry
    Registry._all.pop("colour_test")


def test_register_get_list_and_describe(colours):
    assert colours.register("dark-red", "dr") == "dr"
    colours.register("blue", "b")
    assert colours.names() == ["blue", "dark-red"]
    assert colours.get("DARKRED") == "dr" and "Dark-Red" in colours and "green" not in colours
    assert colours.describe("blue") == "B" and len(colours) == 2 and list(colours) == ["blue", "dark-red"]
    assert Registry.of("colour_test") is colours and Registry.all()["colour_test"] is colours


def test_duplicate_names_fail_and_name_the_entry_already_there(colours):
    colours.register("blue", "b")
    with pytest.raises(ValueError, match=r"a colour_test named 'blue' is already registered \('b'\); choose another"):
        colours.register("BLUE", "other")


def test_unknown_names_suggest_the_nearest(colours):
    colours.register("yellow", "y")
    with pytest.raises(KeyError, match=r"'yelow'. Did you mean 'yellow'\? Registered colour_tests"):
        colours.get("yelow")
    colours.unregister("yellow")
    assert colours.names() == []


def test_one_registry_per_kind(colours):
    with pytest.raises(ValueError, match="already exists"):
        Registry("colour_test")
