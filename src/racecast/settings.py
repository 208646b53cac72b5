"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from racecast.hooks import SourceHooks

HOOKS = (SourceHooks(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
