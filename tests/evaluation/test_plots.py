"""Evaluation figures: right content, nothing saved, no pyplot state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from racecast.evaluation.plots import (
    feature_importance,
    kelly_curve,
    reliability_bins,
    reliability_diagram,
)


def test_reliability_bins_by_hand() -> None:
    # p .05, .15 .12 -> bins 0, 1, 1; bin 1 mean p .135, win rate 1/2
    table = reliability_bins(np.array([0.05, 0.15, 0.12]), np.array([0, 1, 0]))
    assert table.index.tolist() == [0, 1]
    np.testing.assert_allclose(table["mean_p"], [0.05, 0.135])
    np.testing.assert_allclose(table["win_rate"], [0.0, 0.5])
    assert table["count"].tolist() == [1, 2]


def test_reliability_diagram_one_curve_per_model() -> None:
    frame = pd.DataFrame(
        {"won": [1, 0, 0, 1], "a": [0.7, 0.3, 0.4, 0.6], "b": [0.5, 0.5, 0.5, 0.5]}
    )
    figure = reliability_diagram(frame, ["a", "b"])
    assert isinstance(figure, Figure)
    top, bottom = figure.axes
    assert [line.get_label() for line in top.get_lines()] == ["perfect calibration", "a", "b"]
    np.testing.assert_allclose(top.get_lines()[2].get_xydata(), [[0.5, 0.5]])
    with pytest.raises(KeyError, match="'c'"):
        reliability_diagram(frame, ["c"])


def test_kelly_curve_starts_at_one() -> None:
    curves = {"m1": pd.Series([0.9, 1.1]), "m2": pd.Series([1.2, 1.3, 1.4])}
    (axes,) = kelly_curve(curves).axes
    lines = [line for line in axes.get_lines() if line.get_label() in curves]
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 0.9, 1.1])
    np.testing.assert_allclose(lines[1].get_xdata(), [0, 1, 2, 3])


def test_feature_importance_sorted_largest_on_top() -> None:
    importances = pd.Series({"draw": 0.1, "rating": -0.9, "age": 0.4, "going": 0.05})
    (axes,) = feature_importance(importances, top_n=3).axes
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    assert labels == ["draw", "age", "rating"]  # barh draws bottom-up: largest |value| on top
    with pytest.raises(ValueError, match="empty"):
        feature_importance(pd.Series(dtype=float))
