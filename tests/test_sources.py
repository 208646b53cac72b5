"""The env's data source and the registered pipeline names of each source."""

from __future__ import annotations

import pytest

from racecast.sources import BY_SOURCE, DEFAULT_SOURCE, SOURCES, source_of, source_pipeline


def test_the_source_is_read_from_the_parameters() -> None:
    for source in SOURCES:
        assert source_of({"ingestion": {"source": source, "strict": False}}) == source
    assert source_of({}) == source_of({"ingestion": {}}) == DEFAULT_SOURCE


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ingestion.source: unknown source 'betfair'"):
        source_of({"ingestion": {"source": "betfair"}})


def test_only_the_pipelines_that_differ_by_source_have_variants() -> None:
    assert {source_pipeline(name, DEFAULT_SOURCE) for name in BY_SOURCE} == BY_SOURCE
    assert source_pipeline("__default__", "hkjc") == "hkjc:__default__"
    assert source_pipeline("evaluation", "racecards") == "racecards:evaluation"
    assert source_pipeline("features", "hkjc") == "features"
