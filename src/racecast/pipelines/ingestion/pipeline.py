"""Ingestion pipeline: source adapter -> shared validation -> strict mode."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from racecast.pipelines.ingestion.nodes import (
    adapt_hkjc,
    enforce_strict,
    parse_racecards,
    validate_and_split,
)
from racecast.sources import SOURCES, active_source

PARSED = ["parsed_races", "parsed_runners", "parsed_quarantine", "parse_summary"]


def create_pipeline(**kwargs) -> Pipeline:
    """Create the ingestion pipeline of one source.

    Args:
        **kwargs: ``source`` (``synthetic``, ``racecards`` or ``hkjc``); defaults to the
            source of the running session (``racecast.sources.active_source``).

    Returns:
        The adapter node of the source, ``validate_and_split`` and ``enforce_strict``.

    Raises:
        ValueError: If the source is unknown.
    """
    source = kwargs.get("source") or active_source()
    if source == "hkjc":
        adapter = node(
            adapt_hkjc,
            inputs=["hkjc_races", "hkjc_runs", "params:ingestion"],
            outputs=PARSED,
            name="adapt_hkjc_node",
        )
    elif source in ("synthetic", "racecards"):
        adapter = node(
            parse_racecards,
            inputs=["raw_racecards", "params:ingestion"],
            outputs=PARSED,
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
        ]
    )
