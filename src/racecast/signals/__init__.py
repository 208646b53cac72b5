"""Signals database: published win probabilities, stakes, bets and their settlement.

See ``README.md`` in this folder. The public entry points:

* :func:`upgrade` migrates a database (SQLite file or PostgreSQL URL) to the newest schema;
* :func:`publish_signals` upserts one scoring run, keyed by its snapshot ``as_of``;
* :func:`place_bets` and :func:`settle` record and settle back bets, both idempotent;
* :mod:`racecast.signals.staking` has the fair-odds, edge and Kelly arithmetic.
"""

from racecast.signals.db import (
    DEFAULT_URL,
    SchemaNotCurrentError,
    SignalsDatabaseError,
    current_revision,
    engine_from_url,
    session_scope,
    upgrade,
)
from racecast.signals.load import load_bets, load_signals
from racecast.signals.models import Bet, Model, Signal
from racecast.signals.publish import place_bets, prepare_signals, publish_signals
from racecast.signals.settlement import prepare_results, results_from_tables, settle
from racecast.signals.staking import edge, fair_odds, kelly_fraction, stake_units, staking_columns

__all__ = [
    "DEFAULT_URL",
    "Bet",
    "Model",
    "SchemaNotCurrentError",
    "Signal",
    "SignalsDatabaseError",
    "current_revision",
    "edge",
    "engine_from_url",
    "fair_odds",
    "kelly_fraction",
    "load_bets",
    "load_signals",
    "place_bets",
    "prepare_results",
    "prepare_signals",
    "publish_signals",
    "results_from_tables",
    "session_scope",
    "settle",
    "stake_units",
    "staking_columns",
    "upgrade",
]
