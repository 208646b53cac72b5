"""Tiny synthetic racing data for the model-zoo tests.

Each race has 6-12 runners with five standard-normal features; the true win model is
the conditional logit ``p = softmax(x . BETA)`` within the race. Finishing orders are
drawn Plackett-Luce style (utility + Gumbel noise, sorted), which makes the winner
exactly a draw from ``p``. Some features are missing (debutants), two races end in a
dead heat for first, and every runner has a racecard comment whose wording depends on
its utility (plus noise), so text alone carries signal too. Everything uses fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

BETA = np.array([1.0, -0.8, 0.6, 0.4, -0.3])
FEATURES = [f"x{i}" for i in range(len(BETA))]

PHRASES = {
    "good": [
        "travelled strongly and quickened clear",
        "ran on well under hands and heels",
        "led and stayed on strongly",
        "impressive last time and going well",
    ],
    "mid": [
        "kept on at one pace",
        "midfield and never nearer",
        "ran respectably without threatening",
        "plugged on in the straight",
    ],
    "bad": [
        "outpaced and weakened",
        "always behind and never travelling",
        "slowly away and tailed off",
        "weakened quickly two out",
    ],
}


def make_races(n_races: int, seed: int, prefix: str = "R", dead_heats: int = 2) -> pd.DataFrame:
    """One row per runner: race_id, horse_id, x0..x4 (with NaN), won, position, comment."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(6, 13, n_races)
    race = np.repeat(np.arange(n_races), sizes)
    n = int(sizes.sum())
    X = rng.normal(size=(n, len(BETA)))
    utility = X @ BETA
    noisy = utility + rng.gumbel(size=n)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "race_id", [f"{prefix}{r:04d}" for r in race])
    frame.insert(1, "horse_id", [f"H{seed}_{i:05d}" for i in range(n)])
    position = pd.Series(-noisy).groupby(race).rank(method="first").astype(int).to_numpy()
    # dead heats: the runner-up of the first races shares first place
    for r in range(dead_heats):
        position[(race == r) & (position == 2)] = 1
    frame["position"] = position
    frame["won"] = (position == 1).astype(int)
    # racecard text follows a noisy view of the utility
    view = utility + rng.normal(scale=0.7, size=n)
    tier = np.where(view > 0.8, "good", np.where(view < -0.8, "bad", "mid"))
    pick = rng.integers(0, 4, n)
    comments = pd.Series([PHRASES[t][k] for t, k in zip(tier, pick, strict=True)], dtype=object)
    comments[rng.random(n) < 0.1] = None
    frame["comment"] = comments
    # debutants: no form features; plus scattered missing values in x0
    debut = rng.random(n) < 0.12
    frame.loc[debut, ["x3", "x4"]] = np.nan
    frame.loc[rng.random(n) < 0.05, "x0"] = np.nan
    return frame


def split(
    frame: pd.DataFrame, with_text: bool = False
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """(X, y, groups) of a synthetic frame; X holds the features (and the comment if asked)."""
    columns = FEATURES + (["comment"] if with_text else [])
    return frame[columns], frame["won"], frame["race_id"]


@pytest.fixture(scope="session")
def train_frame() -> pd.DataFrame:
    return make_races(150, seed=0, prefix="R")


@pytest.fixture(scope="session")
def test_frame() -> pd.DataFrame:
    return make_races(80, seed=1, prefix="T", dead_heats=0)
