"""The synthetic race world: a seeded, deterministic simulator of flat racing.

The world holds horses, jockeys, trainers and courses and races them day by day. Each
declared runner gets a *linear predictor* ``eta`` (its strength in the race), the sum
of effects a form student would recognise (:data:`ETA_COMPONENTS`; sizes in
``simulation.effects``, :class:`~racecast.simulation.config.EffectsConfig`):

* merit: a fixed talent, an age curve peaking at about 4-5 years, a slowly drifting
  Ornstein-Uhlenbeck "form" and the skill of the horse's yard (trainer);
* suitability: distance (log-distance from the horse's optimum), going (distance from
  its preferred going) and surface preference, all fixed traits of the horse;
* fitness: days since the last run (too fresh or a long layoff hurts; a debut costs
  experience), plus a small day-of-race "readiness" that the racecard comment hints at;
* the rider: jockey skill (fixed, so strike rates reveal it);
* the race: the course's draw bias (by distance band) and pace bias (run style),
  the handicap weight carried (weights follow the official rating), gear (blinkers
  first time give a boost) and body-weight swings;
* a small noise term that the simulator knows (so it is part of ``eta``).

The result is drawn from a Plackett-Luce model: ``u = eta + Gumbel`` and runners finish
in decreasing ``u``, so ``p_true = softmax(eta)`` over the runners is the exact win
probability. Margins and times follow the gaps in ``u``; in-running positions mix a
latent run style with the final order; the betting market is a noisy view of
``p_true`` with a favourite-longshot bias and an overround.

Most of ``eta`` is knowable before the off, as in real racing: the official rating is
the handicapper's close but lagging reading of the horse's merit (each run is assessed
through the race's luck with a small error, and the mark moves part of the way to the
reading); weight, draw, age, days since the last run and gear are on the racecard;
jockeys' skill and the horses' aptitudes are stable, so past results reveal them. The
unknowable parts are small: readiness, noise, the merit of unraced horses (their
connections only place them in a class) and the form drift since the last run. Class
(1 best, 5 lowest) follows the rating; winners go up a class and horses beaten in three
runs in a row drop one; fields mix a race's class with its neighbours.

The module is plain Python (no Kedro); :func:`simulate` returns the documents of the
racecard/results JSON contract (``docs/racecard_format.md``), the oracle table and the
components of ``eta`` (diagnostics).

The model lives in sibling modules: ``population`` (constants, odds ladder, state
types), ``dynamics`` (the ``_World`` and its day-by-day steps), ``documents`` (the
JSON documents) and ``comments`` (comment text).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from racecast.simulation.config import SimulationConfig
from racecast.simulation.dynamics import _World
from racecast.simulation.population import ETA_COMPONENTS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatedWorld:
    """Everything the simulator produces.

    Attributes:
        racecards: Racecard documents (``racecast.racecard/1``) by race day ``YYYY-MM-DD``.
        results: Results documents (``racecast.results/1``) by race day.
        upcoming: Racecard documents of the day after the last race day (no results).
        upcoming_results: That day's results documents, by race day: the synthetic
            race-day feed (pushed race by race with ``racecast results push``); never
            part of the history.
        oracle: One row per runner (non-runners excluded) of every simulated race with
            results: ``race_id``, ``horse_id`` and the exact win probability ``p_true``.
        components: The same rows as ``oracle``: ``race_id``, ``horse_id``, the linear
            predictor ``eta`` and one column per additive part of it
            (:data:`ETA_COMPONENTS`; they sum to ``eta``). Diagnostics only: how much of
            the oracle's strength each effect carries (nothing of it is published).
    """

    racecards: dict[str, dict[str, Any]]
    results: dict[str, dict[str, Any]]
    upcoming: dict[str, dict[str, Any]]
    oracle: pd.DataFrame
    components: pd.DataFrame
    upcoming_results: dict[str, dict[str, Any]] = field(default_factory=dict)



def race_days(cfg: SimulationConfig) -> list[dt.date]:
    """The calendar of race days (deterministic in ``cfg.seed``).

    Args:
        cfg: Validated simulation parameters.

    Returns:
        ``cfg.n_days`` increasing dates starting at ``cfg.start_date``.
    """
    rng = np.random.default_rng([cfg.seed, 1])
    gaps = 1 + rng.poisson(cfg.mean_days_between_race_days - 1, cfg.n_days - 1)
    offsets = np.concatenate([[0], np.cumsum(gaps)])
    return [cfg.start_date + dt.timedelta(days=int(o)) for o in offsets]


def simulate(cfg: SimulationConfig) -> SimulatedWorld:
    """Simulate the race world.

    Args:
        cfg: Validated parameters (see :class:`SimulationConfig`).

    Returns:
        Racecards and results per race day, the next day's racecards and the oracle.
    """
    world = _World(cfg)
    racecards: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    ids: dict[str, list[str]] = {"race_id": [], "horse_id": []}
    numbers: dict[str, list[np.ndarray]] = {k: [] for k in ("p_true", "eta", *ETA_COMPONENTS)}
    days = race_days(cfg)
    # disable=None: the bar is drawn on a terminal only, never into a pipe or a log file
    bar = tqdm(
        days, desc="simulating race days", unit="day", disable=None if cfg.show_progress else True
    )
    for date in bar:
        card, result, rows = world.race_day(date.toordinal(), with_results=True)
        racecards[date.isoformat()] = card
        results[date.isoformat()] = result
        for key, values in ids.items():
            values.extend(rows[key])
        for key, values in numbers.items():
            values.append(rows[key])
    next_day = days[-1] + dt.timedelta(days=1)
    # the card is drawn before the races are run: the same card as without results
    upcoming_card, upcoming_result, _ = world.race_day(next_day.toordinal(), with_results=True)
    keys = {k: pd.Series(v, dtype="string") for k, v in ids.items()}
    columns = {k: pd.Series(np.concatenate(v), dtype="float64") for k, v in numbers.items()}
    oracle_df = pd.DataFrame({**keys, "p_true": columns.pop("p_true")})
    components_df = pd.DataFrame({**keys, **columns})
    logger.info(
        "simulated %d race days, %d races, %d runners; %d horses in the world",
        len(days),
        oracle_df["race_id"].nunique(),
        len(oracle_df),
        world.horses.n,
    )
    return SimulatedWorld(
        racecards=racecards,
        results=results,
        upcoming={next_day.isoformat(): upcoming_card},
        oracle=oracle_df,
        components=components_df,
        upcoming_results={next_day.isoformat(): upcoming_result},
    )



def world_summary(world: SimulatedWorld) -> dict[str, float]:
    """Headline statistics of a simulated world, computed from its documents.

    Args:
        world: Output of :func:`simulate`.

    Returns:
        Counts, rates and the market-versus-oracle log losses over official races with
        one winner (market probability: normalised ``1/odds.final``).
    """
    p_true = {
        (r, h): p
        for r, h, p in zip(
            world.oracle["race_id"], world.oracle["horse_id"], world.oracle["p_true"], strict=True
        )
    }
    status: dict[str, str] = {}
    winners: dict[str, list[str]] = {}
    for doc in world.results.values():
        for res in doc["results"]:
            status[res["race_id"]] = res["status"]
            winners[res["race_id"]] = [
                f["horse_id"] for f in res["finishers"] if f["position"] == 1
            ]
    n_declared = n_nr = n_races = fav_wins = single = 0
    overrounds: list[float] = []
    ll_market: list[float] = []
    ll_oracle: list[float] = []
    ll_uniform: list[float] = []
    for doc in world.racecards.values():
        for meeting in doc["meetings"]:
            for race in meeting["races"]:
                n_races += 1
                runners = [x for x in race["runners"] if not x["non_runner"]]
                n_declared += len(race["runners"])
                n_nr += len(race["runners"]) - len(runners)
                inv = np.array([1 / x["odds"]["final"] for x in runners])
                overrounds.append(float(inv.sum()))
                won = winners[race["race_id"]]
                if status[race["race_id"]] != "official" or len(won) != 1:
                    continue
                single += 1
                ids = [x["horse_id"] for x in runners]
                w = ids.index(won[0])
                fav_wins += inv[w] == inv.max()
                ll_market.append(-math.log(inv[w] / inv.sum()))
                ll_oracle.append(-math.log(p_true[(race["race_id"], won[0])]))
                ll_uniform.append(math.log(len(runners)))
    n_void = sum(s == "void" for s in status.values())
    n_dead_heat = sum(len(w) > 1 for w in winners.values())
    return {
        "race_days": len(world.racecards),
        "races": n_races,
        "declared_runners": n_declared,
        "runners": n_declared - n_nr,
        "non_runner_rate": n_nr / max(n_declared, 1),
        "void_rate": n_void / max(n_races, 1),
        "dead_heat_rate": n_dead_heat / max(n_races, 1),
        "favourite_win_rate": fav_wins / max(single, 1),
        "mean_overround": float(np.mean(overrounds)) if overrounds else float("nan"),
        "market_log_loss": float(np.mean(ll_market)) if ll_market else float("nan"),
        "oracle_log_loss": float(np.mean(ll_oracle)) if ll_oracle else float("nan"),
        "uniform_log_loss": float(np.mean(ll_uniform)) if ll_uniform else float("nan"),
    }
