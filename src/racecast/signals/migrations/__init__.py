"""Alembic migrations of the signals database (run by ``racecast.signals.db.upgrade``)."""
