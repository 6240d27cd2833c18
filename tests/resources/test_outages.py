"""``is_outage``: which errors the assets and the shard pool retry, including Event Hubs' own."""

import pytest
import sqlalchemy.exc
from azure.core.exceptions import ServiceRequestError
from azure.eventhub.exceptions import (AuthenticationError, ConnectError, ConnectionLostError, EventDataError,
                                       OperationTimeoutError)

from resources.outages import is_outage


def raised_from(cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as exc:
            raise RuntimeError("receiving from Event Hub readings failed: ConnectError on partition 0") from exc
    except RuntimeError as wrapper:
        return wrapper


@pytest.mark.parametrize("error", [
    ConnectError("link refused"), ConnectionLostError("link detached"), OperationTimeoutError("no answer"),
    ConnectionResetError(), TimeoutError(), ServiceRequestError("dns"),
    sqlalchemy.exc.OperationalError("SELECT 1", None, Exception("server closed the connection")),
])
def test_outages(error):
    assert is_outage(error) and is_outage(raised_from(error))


@pytest.mark.parametrize("error", [
    AuthenticationError("Unauthorized: missing Listen claim"),  # a ConnectError to the SDK, not an outage
    EventDataError("event too large"), ValueError("bad reading"), RuntimeError("bug"),
])
def test_not_outages(error):
    assert not is_outage(error) and not is_outage(raised_from(error))
