"""Retry a materialization when an outside system is briefly unreachable, and only then.

Every asset replaces its partitions' data whole, so running it again after a failure
cannot duplicate anything. Outages (connection refused or dropped, timeouts) are retried
with exponential back-off; any other error fails the run at once with its own message.
"""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg

from resources.outages import is_outage

MAX_RETRIES = 3
FIRST_DELAY_SECONDS = 2.0


@contextmanager
def retry_on_outage(context: dg.AssetExecutionContext):
    """Turn an outage inside the block into Dagster's ``RetryRequested``, with back-off."""
    try:
        yield
    except Exception as exc:
        if not is_outage(exc):
            raise
        wait = FIRST_DELAY_SECONDS * 2 ** context.retry_number
        context.log.warning(f"outside system unreachable ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
                            f"retry {context.retry_number + 1} of {MAX_RETRIES} in {wait:.0f}s")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from exc
