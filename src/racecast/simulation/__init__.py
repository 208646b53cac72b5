"""The synthetic race world: a seeded simulator that writes the racecard/results JSON."""

from racecast.simulation.config import MarketConfig, SimulationConfig
from racecast.simulation.documents import to_json_text
from racecast.simulation.world import SimulatedWorld, simulate, world_summary

__all__ = [
    "MarketConfig",
    "SimulatedWorld",
    "SimulationConfig",
    "simulate",
    "to_json_text",
    "world_summary",
]
