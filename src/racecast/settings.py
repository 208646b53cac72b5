"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from racecast.hooks import ThreadLimitHook
from racecast.known_warnings import quiet_known_warnings
from racecast.session import RacecastSession

# Kedro imports this module before it builds the session (and before plugins load): the
# harmless third-party warnings are silenced from there on and every other warning is
# logged in conf/logging.yml's format.
quiet_known_warnings()

# Runs the pipelines composed for the env's `ingestion.source` (racecast.sources).
SESSION_CLASS = RacecastSession

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An env (hkjc, racecards, local) overrides only the parameter keys it names; the
    # rest of each block (e.g. ingestion.strict) keeps its base value.
    "merge_strategy": {"parameters": "soft"},
}

# Numerical libraries share the cores by `runtime.n_threads` (racecast.threads), whichever
# runner runs the pipeline.
HOOKS = (ThreadLimitHook(),)
