"""racecast: race-outcome forecasting with Kedro and Feast."""

__version__ = "0.1.0"
