"""The session's data source: recorded by the context, read by the pipeline registry."""

from __future__ import annotations

import pytest

from racecast.sources import DEFAULT_SOURCE, SOURCES, active_source, set_active_source


def test_the_recorded_source_is_the_active_one() -> None:
    try:
        for source in SOURCES:
            set_active_source(source)
            assert active_source() == source
    finally:
        set_active_source(DEFAULT_SOURCE)
    assert active_source() == DEFAULT_SOURCE


def test_an_unknown_source_is_refused_and_the_previous_one_kept() -> None:
    set_active_source("hkjc")
    try:
        with pytest.raises(ValueError, match=r"ingestion.source: unknown source 'betfair'"):
            set_active_source("betfair")
        assert active_source() == "hkjc"
    finally:
        set_active_source(DEFAULT_SOURCE)
