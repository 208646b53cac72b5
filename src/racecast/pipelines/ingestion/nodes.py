"""Nodes of the ingestion pipeline.

The implementations live in ``racecast.ingestion`` so that other code (the service, the
notebooks) parses and validates exactly as the pipeline does:

* ``parse_racecards``: adapter of the ``racecards`` and ``synthetic`` sources (JSON files);
* ``adapt_hkjc``: adapter of the ``hkjc`` source (Hong Kong CSVs);
* ``parse_raceday`` / ``merge_raceday``: results pushed on race day
  (``data/01_raw/raceday/``) join the source's races, replacing a race they correct;
* ``validate_and_split``: shared validation, quarantine and report for every source;
* ``enforce_strict``: fails the run in ``ingestion.strict`` mode, after the quarantine and
  the report are saved.
"""

from __future__ import annotations

import pandas as pd

from racecast.ingestion.racecards import merge_raceday, parse_racecards
from racecast.ingestion.validate import enforce_strict, validate_and_split

__all__ = [
    "adapt_hkjc",
    "enforce_strict",
    "merge_raceday",
    "parse_raceday",
    "parse_racecards",
    "validate_and_split",
]


def parse_raceday(
    raw_raceday: dict, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Parse the race-day folder (results pushed between races) as racecard JSON files.

    Args:
        raw_raceday: ``{partition_id: load_fn}`` of ``<race_id>.racecard`` /
            ``<race_id>.results`` documents.
        params: ``params:ingestion`` (``months``).

    Returns:
        :func:`racecast.ingestion.racecards.parse_racecards` outputs.
    """
    return parse_racecards(raw_raceday, {**params, "source": "racecards"})


def adapt_hkjc(
    hkjc_races: pd.DataFrame, hkjc_runs: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Map the Hong Kong CSVs onto canonical frames (``racecast.ingestion.hkjc``).

    The adapter module is imported when the node runs, so that the other sources do not
    depend on it.

    Args:
        hkjc_races: ``races.csv`` of the HKJC data set.
        hkjc_runs: ``runs.csv`` of the HKJC data set.
        params: ``params:ingestion``.

    Returns:
        ``parsed_races``, ``parsed_runners``, ``parsed_quarantine``, ``parse_summary``.
    """
    from racecast.ingestion.hkjc import adapt_hkjc as adapt

    return adapt(hkjc_races, hkjc_runs, params)
