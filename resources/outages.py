"""Which errors mean an outside system is briefly unreachable (an outage worth retrying), and
not a fault of the data or the code: one classification, ``is_outage``, used by the assets' retry
policy (``bscore_assets/retries.py``) and by the process pool's shard retries
(``resources/compute.py``).

Event Hubs raises its own errors, outside the ``ConnectionError`` family: a refused or dropped
AMQP link and an operation timing out are outages; a refused sign-in is not, although the SDK
makes ``AuthenticationError`` a kind of ``ConnectError`` (a wrong key or a missing role does not
heal with a retry). An error re-raised with another's cause (``raise … from exc``) is judged by
the causes too, so a wrapper naming the hub keeps its outage retried.
"""

from __future__ import annotations

import sqlalchemy.exc
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.eventhub.exceptions import AuthenticationError, ConnectError, ConnectionLostError, OperationTimeoutError

TRANSIENT_ERRORS = (
    ConnectionError,
    TimeoutError,
    ServiceRequestError,
    ServiceResponseError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    ConnectError,
    ConnectionLostError,
    OperationTimeoutError,
)
NEVER_OUTAGES = (AuthenticationError,)


def is_outage(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from, is an outage (see the module docstring)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NEVER_OUTAGES):
            return False
        if isinstance(error, TRANSIENT_ERRORS):
            return True
        error = error.__cause__
    return False
