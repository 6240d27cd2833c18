"""The reliability suite uses the assets suite's platform on a temporary BSCORE_HOME."""

from tests.assets.conftest import platform, simulated  # noqa: F401  (fixtures)
