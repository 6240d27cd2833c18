"""The composition root that ``workspace.yaml``, ``dagster dev`` and the daemon load: bscore's
definitions built from the environment (see ``bscore_assets.definitions``)."""

from bscore_assets.definitions import build_defs

defs = build_defs()
