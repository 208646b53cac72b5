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
    wilson_interval,
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


def test_wilson_interval_by_hand() -> None:
    # 0 of 1: [0, z^2/(1+z^2)] = [0, 0.7935]; 5 of 10: symmetric around 0.5
    low, high = wilson_interval(np.array([0.0, 5.0]), np.array([1.0, 10.0]))
    np.testing.assert_allclose(low, [0.0, 0.2366], atol=1e-4)
    np.testing.assert_allclose(high, [0.7935, 0.7634], atol=1e-4)
    table = reliability_bins(np.array([0.95]), np.array([0]))
    assert table[["low", "high"]].to_numpy().round(4).tolist() == [[0.0, 0.7935]]


def test_reliability_reference_is_dashed_underneath_and_coincidence_labelled() -> None:
    frame = pd.DataFrame(
        {"won": [1, 0, 0, 1], "model": [0.7, 0.3, 0.4, 0.6], "market": [0.6, 0.3, 0.2, 0.6]}
    )
    frame["blend"] = frame["market"]
    figure = reliability_diagram(frame, ["model", "market", "blend"], reference="market")
    top = figure.axes[0]
    lines = {line.get_label(): line for line in top.get_lines()}
    assert list(lines) == ["perfect calibration", "market", "model", "blend (= market)"]
    assert lines["market"].get_linestyle() == "--"
    assert lines["market"].get_zorder() < lines["blend (= market)"].get_zorder()
    assert lines["market"].get_color() != lines["blend (= market)"].get_color()
    # one Wilson bar per bin and curve: model in 4 bins, market and blend in 3
    assert sum(len(c.get_segments()) for c in top.collections) == 4 + 3 + 3


def test_kelly_axis_has_readable_ticks() -> None:
    narrow = {"market": pd.Series(np.linspace(0.98, 0.8, 50)), "model": pd.Series([1.05] * 50)}
    (axes,) = kelly_curve(narrow, reference="market").axes
    axes.figure.canvas.draw()
    low, high = axes.get_ylim()
    ticks = [t for t in axes.get_yticks() if low <= t <= high]
    assert len(ticks) >= 3
    labels = [t.get_text() for t in axes.get_yticklabels() if t.get_text()]
    assert "1" in labels and "0.9" in labels
    assert (
        axes.get_lines()[0].get_label() == "market" and axes.get_lines()[0].get_linestyle() == "--"
    )


def test_feature_importance_title_names_model_and_kind() -> None:
    importances = pd.Series({"draw": 0.1, "rating": 0.9}, name="importance")
    (axes,) = feature_importance(importances, model="lgbm_ranker", kind="total split gain").axes
    assert axes.get_title() == "Feature importance of lgbm_ranker: total split gain (top 2 of 2)"
    assert axes.get_xlabel() == "total split gain"
