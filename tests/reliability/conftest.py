"""The reliability suite uses the assets suite's platform on a temporary BSCORE_HOME."""

from tests.assets.conftest import (  # noqa: F401  (fixtures)
    platform, simulated, trained, trained_kind,
)
