"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from racecast.context import RacecastContext

# Records `ingestion.source` of the env so pipelines are composed for that source.
CONTEXT_CLASS = RacecastContext

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An env (hkjc, racecards, local) overrides only the parameter keys it names; the
    # rest of each block (e.g. ingestion.strict) keeps its base value.
    "merge_strategy": {"parameters": "soft"},
}
