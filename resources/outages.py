"""Which errors mean an outside system is briefly unreachable (an outage worth retrying), and
not a fault of the data or the code: one list, used by the assets' retry policy
(``bscore_assets/retries.py``) and by the process pool's shard retries (``resources/compute.py``)."""

import sqlalchemy.exc
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

TRANSIENT_ERRORS = (
    ConnectionError,
    TimeoutError,
    ServiceRequestError,
    ServiceResponseError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)
