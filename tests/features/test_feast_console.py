"""What Feast prints while materializing reaches a pipe or a log file as plain log lines,
without colour codes or progress bars."""

from __future__ import annotations

import logging

import pandas as pd

from racecast.features import store

from .test_feast import feast_project  # noqa: F401  (the fixture: a temp project, repo applied)


def test_materialize_logs_feast_output_without_colour_codes_when_not_a_terminal(
    feast_project,  # noqa: F811
    capsys,
    caplog,
):
    until = feast_project["labelled"]["off_time"].max() + pd.Timedelta(hours=1)
    with caplog.at_level(logging.INFO, logger="racecast.features.store"):
        store.materialize(feast_project["store"], until)
    printed = capsys.readouterr()  # pytest's capture is not a terminal
    assert "Materializing" not in printed.out and "\x1b[" not in printed.out
    assert "%|" not in printed.err  # no progress bar drawn into a pipe
    feast_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("feast: ")]
    assert any("Materializing" in line and "feature views" in line for line in feast_lines)
    assert not any("\x1b[" in line for line in feast_lines)
