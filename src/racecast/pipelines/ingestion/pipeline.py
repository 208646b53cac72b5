"""Ingestion pipeline: source adapter -> shared validation -> strict mode."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from racecast.pipelines.ingestion.nodes import (
    adapt_hkjc,
    enforce_strict,
    merge_raceday,
    parse_racecards,
    parse_raceday,
    validate_and_split,
)
from racecast.sources import DEFAULT_SOURCE, SOURCES

PARSED = ["parsed_races", "parsed_runners", "parsed_quarantine", "parse_summary"]
SOURCE_PARSED = [f"source_{name}" for name in PARSED]
RACEDAY_PARSED = [f"raceday_{name}" for name in PARSED]


def create_pipeline(**kwargs) -> Pipeline:
    """Create the ingestion pipeline of one source.

    Args:
        **kwargs: ``source`` (``synthetic``, ``racecards`` or ``hkjc``; default
            ``synthetic``). The registry composes one per source (``racecast.sources``).

    Returns:
        The adapter node of the source, the race-day pushes parsed and merged in (they
        replace the source's version of a race), ``validate_and_split`` and
        ``enforce_strict``.

    Raises:
        ValueError: If the source is unknown.
    """
    source = kwargs.get("source") or DEFAULT_SOURCE
    if source == "hkjc":
        adapter = node(
            adapt_hkjc,
            inputs=["hkjc_races", "hkjc_runs", "params:ingestion"],
            outputs=SOURCE_PARSED,
            name="adapt_hkjc_node",
        )
    elif source in ("synthetic", "racecards"):
        adapter = node(
            parse_racecards,
            inputs=["raw_racecards", "params:ingestion"],
            outputs=SOURCE_PARSED,
            name="parse_racecards_node",
        )
    else:
        raise ValueError(
            f"ingestion pipeline: unknown source {source!r}; expected one of {', '.join(SOURCES)}"
        )
    return Pipeline(
        [
            adapter,
            node(
                parse_raceday,
                inputs=["raw_raceday", "params:ingestion"],
                outputs=RACEDAY_PARSED,
                name="parse_raceday_node",
            ),
            node(
                merge_raceday,
                inputs=[*SOURCE_PARSED, *RACEDAY_PARSED],
                outputs=PARSED,
                name="merge_raceday_node",
            ),
            node(
                validate_and_split,
                inputs=[*PARSED, "params:ingestion"],
                outputs=["races", "runners", "quarantine", "ingestion_report"],
                name="validate_and_split_node",
            ),
            node(
                enforce_strict,
                inputs=["ingestion_report", "params:ingestion"],
                outputs=None,
                name="enforce_strict_node",
            ),
        ],
        namespace="ingestion",
        prefix_datasets_with_namespace=False,
    )
