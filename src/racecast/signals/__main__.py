"""``python -m racecast.signals upgrade|current --url URL``: migrations without ``alembic.ini``."""

from racecast.signals.db import cli

if __name__ == "__main__":
    cli(prog_name="python -m racecast.signals")
