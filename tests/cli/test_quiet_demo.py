"""The demo, as a new user runs it, prints no warning: every library notice is either fixed or hidden."""

from __future__ import annotations

import warnings

from adalora_scores.cli import main


def test_the_demo_emits_no_warning(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(
            ["demo", "--tiny", "--output", str(tmp_path / "demo"), "--seeds", "1", "num_epochs=1", "batch_size=32"]
        )
    assert code == 0
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    printed = capsys.readouterr()
    assert "Warning" not in printed.err and "LOAD REPORT" not in printed.err + printed.out
