"""The hour, bscore's unit of partitioning, defined once (as a pandas span and in seconds)."""

from __future__ import annotations

import pandas as pd

HOUR = pd.Timedelta(hours=1)
HOUR_SECONDS = 3600
