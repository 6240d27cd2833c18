"""The composition root that ``workspace.yaml``, ``dagster dev`` and the daemon load: bscore's
definitions built from the environment (see ``bscore_assets.definitions``).

The environment is read when Dagster loads the code location (``@dg.definitions``), not when
this module is imported, so every load sees the variables of its own process.
"""

import dagster as dg

from bscore_assets.definitions import build_defs
from bscore_assets.settings import Settings


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs(Settings.from_env())
