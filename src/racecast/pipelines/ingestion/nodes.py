"""Nodes of the ingestion pipeline.

The implementations live in ``racecast.ingestion`` so that other code (the service, the
notebooks) parses and validates exactly as the pipeline does:

* ``parse_racecards``: adapter of the ``racecards`` and ``synthetic`` sources (JSON files);
* ``adapt_hkjc``: adapter of the ``hkjc`` source (Hong Kong CSVs);
* ``validate_and_split``: shared validation, quarantine and report for every source;
* ``enforce_strict``: fails the run in ``ingestion.strict`` mode, after the quarantine and
  the report are saved.
"""

from __future__ import annotations

import pandas as pd

from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.validate import enforce_strict, validate_and_split

__all__ = ["adapt_hkjc", "enforce_strict", "parse_racecards", "validate_and_split"]


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
