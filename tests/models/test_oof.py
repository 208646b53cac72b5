"""Tests of the walk-forward out-of-fold predictions (``racecast.models.oof``).

A stand-in race model records the latest race day it was trained on and the race days it
is asked to predict, so look-ahead is checked on what the models actually saw. Its
probabilities are the per-race softmax of one feature, so every OOF value can be checked
against a closed form (which also checks that predictions land on the right rows).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest

from racecast.models.factory import build_model
from racecast.models.oof import (
    assert_no_lookahead,
    fit_and_predict_holdout,
    out_of_fold_predictions,
)
from racecast.models.split import time_folds

N_DAYS = 12
RACES_PER_DAY = 3
FIRST_DAY = pd.Timestamp("2024-01-01")


def per_race_softmax(x: pd.Series, groups: pd.Series) -> pd.Series:
    """Reference per-race softmax (plain pandas, independent of the code under test)."""
    e = np.exp(x - x.groupby(groups).transform("max"))
    return e / e.groupby(groups).transform("sum")


def make_frame(seed: int = 0) -> pd.DataFrame:
    """Runners of ``N_DAYS`` race days in shuffled row order with a non-default index."""
    rng = np.random.default_rng(seed)
    n_races = N_DAYS * RACES_PER_DAY
    sizes = rng.integers(5, 9, n_races)
    race = np.repeat(np.arange(n_races), sizes)
    n = int(sizes.sum())
    day = race // RACES_PER_DAY
    x = rng.normal(size=n)
    gumbel = x + rng.gumbel(size=n)
    won = (gumbel == pd.Series(gumbel).groupby(race).transform("max").to_numpy()).astype(int)
    frame = pd.DataFrame(
        {
            "race_id": [f"R{r:03d}" for r in race],
            "race_day": FIRST_DAY + pd.to_timedelta(day, unit="D"),
            "day_number": day,
            "x": x,
            "won": won,
        }
    )
    frame.index = pd.Index([f"row{i:04d}" for i in range(n)], name="runner")
    return frame.sample(frac=1.0, random_state=seed)  # time order must not come from rows


class DayRecorder:
    """Stand-in race model: P = per-race softmax of ``x``; records what it saw.

    Every instance appends ``(instance id, latest training day, earliest and latest
    predicted day, relevance given?)`` to the shared ``events`` list on ``predict_proba``.
    """

    def __init__(self, events: list[dict], scale: float = 1.0) -> None:
        self.events = events
        self.scale = scale

    def fit(self, X, y, groups, relevance=None):
        assert X.index.equals(y.index) and X.index.equals(groups.index)
        if relevance is not None:
            assert X.index.equals(relevance.index)
        self.train_max_day_ = int(X["day_number"].max())
        self.n_train_ = len(X)
        self.got_relevance_ = relevance is not None
        return self

    def predict_proba(self, X, groups):
        self.events.append(
            {
                "model": id(self),
                "train_max_day": self.train_max_day_,
                "n_train": self.n_train_,
                "pred_min_day": int(X["day_number"].min()),
                "pred_max_day": int(X["day_number"].max()),
                "relevance": self.got_relevance_,
            }
        )
        return self.scale * per_race_softmax(X["x"], groups).to_numpy()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


def run_oof(frame: pd.DataFrame, events: list, n_folds: int = 4, min_train_days: int = 4, **kw):
    model_kw = kw.pop("model_kw", {})
    return out_of_fold_predictions(
        lambda: DayRecorder(events, **model_kw),
        frame[["day_number", "x"]],
        frame["won"],
        frame["race_id"],
        frame["race_day"],
        n_folds=n_folds,
        min_train_days=min_train_days,
        **kw,
    )


def test_never_trains_on_a_day_on_or_after_a_predicted_day(frame):
    events: list[dict] = []
    run_oof(frame, events, n_folds=4, min_train_days=4)
    assert len(events) == 4
    assert len({e["model"] for e in events}) == 4, "each fold must fit a fresh model"
    for e in events:
        assert e["train_max_day"] < e["pred_min_day"]
        # expanding window: trains on every day before the block, not fewer
        assert e["train_max_day"] == e["pred_min_day"] - 1
    # the blocks tile days 4..11 in time order and training sets only grow
    assert [e["pred_min_day"] for e in events] == [4, 6, 8, 10]
    assert [e["pred_max_day"] for e in events] == [5, 7, 9, 11]
    assert np.all(np.diff([e["n_train"] for e in events]) > 0)


def test_first_days_are_nan_and_the_rest_match_the_model(frame):
    events: list[dict] = []
    oof = run_oof(frame, events, n_folds=3, min_train_days=5)
    assert oof.index.equals(frame.index)
    assert oof.dtype == np.float64
    early = frame["day_number"] < 5
    assert oof[early].isna().all()
    assert oof[~early].notna().all()
    expected = per_race_softmax(frame["x"], frame["race_id"])
    np.testing.assert_allclose(oof[~early], expected[~early], rtol=0, atol=1e-12)


def test_probabilities_sum_to_one_per_race(frame):
    oof = run_oof(frame, [], n_folds=4, min_train_days=2)
    sums = oof.dropna().groupby(frame["race_id"]).sum()
    assert len(sums) == (N_DAYS - 2) * RACES_PER_DAY
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)


def test_unnormalised_model_output_is_renormalised_with_a_warning(frame, caplog):
    with caplog.at_level(logging.WARNING, logger="racecast.models.oof"):
        oof = run_oof(frame, [], n_folds=2, min_train_days=4, model_kw={"scale": 3.0})
    assert "re-normalised" in caplog.text
    np.testing.assert_allclose(oof.dropna().groupby(frame["race_id"]).sum(), 1.0, atol=1e-12)


def test_relevance_is_forwarded_only_when_given(frame):
    with_rel: list[dict] = []
    run_oof(frame, with_rel, relevance=frame["won"] * 3)
    without: list[dict] = []
    run_oof(frame, without)
    assert all(e["relevance"] for e in with_rel)
    assert not any(e["relevance"] for e in without)


def test_a_race_spanning_two_days_is_rejected(frame):
    days = frame["race_day"].copy()
    first_race = frame["race_id"].iloc[0]
    rows = frame.index[frame["race_id"] == first_race]
    days.loc[rows[0]] = days.loc[rows[0]] + pd.Timedelta(days=1)
    with pytest.raises(ValueError, match="race_days is not constant within a race"):
        out_of_fold_predictions(
            lambda: DayRecorder([]),
            frame[["day_number", "x"]],
            frame["won"],
            frame["race_id"],
            days,
            n_folds=2,
            min_train_days=2,
        )


def test_misaligned_inputs_and_too_few_days_are_rejected(frame):
    X = frame[["day_number", "x"]]
    with pytest.raises(ValueError, match="y must have the same index as X"):
        out_of_fold_predictions(
            lambda: DayRecorder([]),
            X,
            frame["won"].sort_index(),
            frame["race_id"],
            frame["race_day"],
            n_folds=2,
            min_train_days=2,
        )
    with pytest.raises(ValueError, match="need at least min_train_days \\+ n_folds"):
        out_of_fold_predictions(
            lambda: DayRecorder([]),
            X,
            frame["won"],
            frame["race_id"],
            frame["race_day"],
            n_folds=N_DAYS,
            min_train_days=1,
        )


def test_assert_no_lookahead_accepts_time_folds_and_rejects_lookahead(frame):
    days = frame["race_day"].reset_index(drop=True)
    assert_no_lookahead(time_folds(days, n_folds=3, min_train_days=3), days)

    day = frame["day_number"].to_numpy()
    day5 = np.flatnonzero(day == 5)
    same_day = (np.r_[np.flatnonzero(day < 5), day5[:2]], day5[2:])
    with pytest.raises(AssertionError, match="fold 0: .*look-ahead"):
        assert_no_lookahead([same_day], days)
    later = (np.flatnonzero(day != 3), np.flatnonzero(day == 3))
    with pytest.raises(AssertionError, match="fold 0: .*look-ahead"):
        assert_no_lookahead([later], days)
    good = (np.flatnonzero(day < 3), np.flatnonzero(day == 3))
    with pytest.raises(AssertionError, match="fold 1: training and validation rows overlap"):
        assert_no_lookahead([good, (np.r_[good[0], good[1][:1]], good[1])], days)


def test_fit_and_predict_holdout(frame):
    train = frame[frame["day_number"] < 9]
    hold = frame[frame["day_number"] >= 9]
    events: list[dict] = []
    model, proba = fit_and_predict_holdout(
        lambda: DayRecorder(events),
        train[["day_number", "x"]],
        train["won"],
        train["race_id"],
        hold[["day_number", "x"]],
        hold["race_id"],
    )
    assert isinstance(model, DayRecorder) and model.train_max_day_ == 8
    assert proba.index.equals(hold.index)
    np.testing.assert_allclose(proba, per_race_softmax(hold["x"], hold["race_id"]), atol=1e-12)
    with pytest.raises(ValueError, match="share 1 race ids"):
        fit_and_predict_holdout(
            lambda: DayRecorder([]),
            train[["day_number", "x"]],
            train["won"],
            train["race_id"],
            frame.loc[[train.index[0]], ["day_number", "x"]],
            frame.loc[[train.index[0]], "race_id"],
        )


def test_real_zoo_model_beats_uniform_out_of_fold(frame):
    """End to end with a real RaceModel: OOF log loss beats the uniform baseline.

    The winners are drawn from softmax(x), so a conditional logit on x should recover a
    clearly better-than-uniform fit even from the first four days (~100 runners).
    """
    oof = out_of_fold_predictions(
        lambda: build_model({"module": "racecast.models.linear", "class": "ConditionalLogit"}),
        frame[["x"]],
        frame["won"],
        frame["race_id"],
        frame["race_day"],
        n_folds=4,
        min_train_days=4,
        name="p_clogit",
    )
    assert oof.name == "p_clogit"
    done = oof.notna()
    won = (frame["won"] == 1) & done
    model_ll = -np.log(oof[won]).mean()
    sizes = frame.loc[done].groupby("race_id").size()
    uniform_ll = np.log(sizes.loc[frame.loc[won, "race_id"]]).mean()
    assert model_ll < uniform_ll - 0.1


class _Collect(logging.Handler):
    """A console handler that is not a ``StreamHandler`` (as Kedro's rich handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.setLevel(logging.INFO)
    yield root
    root.handlers = handlers
    root.setLevel(level)


def test_fold_lines_go_only_through_a_console_handler_that_is_not_a_stream(
    frame, capsys, root_logger
):
    collect = _Collect()
    root_logger.handlers = [collect]
    run_oof(frame, [], n_folds=3, min_train_days=4, name="probe")
    assert [m.split(":")[0] for m in collect.messages if m.startswith("OOF probe fold")] == [
        "OOF probe fold 1/3",
        "OOF probe fold 2/3",
        "OOF probe fold 3/3",
    ]
    assert "OOF probe fold" not in capsys.readouterr().err  # no second, plain copy


def test_fold_lines_are_printed_once_by_a_console_stream_handler(frame, capsys, root_logger):
    root_logger.handlers = [logging.StreamHandler(sys.stderr)]
    run_oof(frame, [], n_folds=3, min_train_days=4, name="probe")
    err = capsys.readouterr().err
    assert [err.count(f"OOF probe fold {k}/3:") for k in (1, 2, 3)] == [1, 1, 1]
