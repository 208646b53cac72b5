"""Nodes of the simulation pipeline: run the synthetic race world and serialise its JSON."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from racecast.simulation import (
    SimulatedWorld,
    SimulationConfig,
    simulate,
    to_json_text,
    world_summary,
)

logger = logging.getLogger(__name__)


def simulate_world(
    params: dict[str, Any],
) -> tuple[dict[str, str], pd.DataFrame, dict[str, str], dict[str, str], dict[str, str]]:
    """Simulate the race world and return its files and ground truth.

    Args:
        params: The ``simulation`` parameters (``conf/base/parameters/simulation.yml``).

    Returns:
        ``raw_racecards``: JSON text by partition id, ``YYYY-MM-DD.racecard`` and
        ``YYYY-MM-DD.results`` for every race day; ``oracle_win_probabilities``: one row
        per runner (``race_id``, ``horse_id``, ``p_true``); ``raw_upcoming_racecards``:
        JSON text of the next day's racecards by partition id ``YYYY-MM-DD``;
        ``raw_upcoming_results``: that day's results by the same ids (the synthetic
        race-day feed, to push race by race; never ingested with the history);
        ``raw_raceday``: empty (a new world starts with no race-day pushes).

    Raises:
        ValueError: If a parameter is invalid; the message names it (``simulation.<name>``).
    """
    world = simulate(SimulationConfig.from_params(params))
    summary = world_summary(world)
    logger.info(
        "synthetic world: %d races, %d runners; favourite won %.1f%%, mean overround %.3f, "
        "log loss market %.4f vs oracle %.4f (uniform %.4f)",
        summary["races"],
        summary["runners"],
        100 * summary["favourite_win_rate"],
        summary["mean_overround"],
        summary["market_log_loss"],
        summary["oracle_log_loss"],
        summary["uniform_log_loss"],
    )
    upcoming_results = {day: to_json_text(doc) for day, doc in world.upcoming_results.items()}
    return (
        racecard_partitions(world),
        world.oracle,
        upcoming_partitions(world),
        upcoming_results,
        {},
    )


def racecard_partitions(world: SimulatedWorld) -> dict[str, str]:
    """Racecard and results files of every race day, keyed by partition id.

    Args:
        world: A simulated world.

    Returns:
        ``{"YYYY-MM-DD.racecard": json_text, "YYYY-MM-DD.results": json_text, ...}``; with
        the catalog's ``filename_suffix: .json`` these become ``*.racecard.json`` and
        ``*.results.json``.
    """
    partitions = {f"{day}.racecard": to_json_text(doc) for day, doc in world.racecards.items()}
    partitions.update({f"{day}.results": to_json_text(doc) for day, doc in world.results.items()})
    return partitions


def upcoming_partitions(world: SimulatedWorld) -> dict[str, str]:
    """Racecards of the day after the last race day (no results), keyed by date.

    Args:
        world: A simulated world.

    Returns:
        ``{"YYYY-MM-DD": json_text}``; the catalog's suffix ``.racecard.json`` completes
        the file name.
    """
    return {day: to_json_text(doc) for day, doc in world.upcoming.items()}
