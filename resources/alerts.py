"""Where alerts go: a Microsoft Teams channel (``dagster-msteams``) or a generic JSON webhook.

An :class:`Alert` is a cause, a title and lines of text plus the names it is about (run, check,
hour, device). The webhook URL is a secret (a Teams URL carries its signature): it is held
only in the resource, read through its variable's name, and never put in a log, a metadata
value or an error — a failed delivery says which variable's webhook failed and how.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import requests
from dagster_msteams.adaptive_card import AdaptiveCard
from dagster_msteams.card import Card
from dagster_msteams.client import TeamsClient

TIMEOUT_SECONDS = 15
KINDS = {"teams": "BSCORE_TEAMS_WEBHOOK_URL", "webhook": "BSCORE_ALERT_WEBHOOK_URL"}


@dataclass(frozen=True)
class Alert:
    """One alert: ``cause`` is ``run_failure``, ``check_failure``, ``late_hour``, ``silent_devices`` or ``digest``."""

    cause: str
    title: str
    lines: list[str]
    subjects: dict = field(default_factory=dict)  # the names it is about: run_id, check, hour, devices, ...

    def text(self) -> str:
        return "\n".join([self.title, *self.lines])

    def to_json(self) -> dict:
        return {"source": "bscore", "cause": self.cause, "title": self.title, "text": self.text(),
                "subjects": self.subjects}


class AlertDeliveryError(RuntimeError):
    """An alert did not reach its webhook (the message names the variable, never the URL)."""


class AlertChannel(dg.ConfigurableResource):
    """Posts alerts to one webhook (resource key ``alerts``): ``kind`` is ``teams`` or ``webhook``."""

    kind: str
    url: str

    def post(self, alert: Alert) -> None:
        """Deliver ``alert``; raise :class:`AlertDeliveryError` when the endpoint refuses or is unreachable."""
        variable = KINDS.get(self.kind)
        if variable is None:
            raise ValueError(f"alert channel kind {self.kind!r} must be one of {', '.join(KINDS)}")
        try:
            if self.kind == "teams":
                self._post_teams(alert)
            else:
                response = requests.post(self.url, json=alert.to_json(), timeout=TIMEOUT_SECONDS)
                if not response.ok:
                    raise AlertDeliveryError(f"{variable}: the webhook answered HTTP {response.status_code} "
                                             f"to the {alert.cause} alert")
        except AlertDeliveryError:
            raise
        except Exception as exc:
            # requests' messages quote the URL (and so its signature): only the error's type is kept.
            raise AlertDeliveryError(f"{variable}: the {alert.cause} alert was not delivered "
                                     f"({type(exc).__name__}); is the webhook reachable?") from None

    def _post_teams(self, alert: Alert) -> None:
        client = TeamsClient(hook_url=self.url, timeout=TIMEOUT_SECONDS)
        if client.is_legacy_webhook():  # an Office 365 connector: one hero card
            card = Card()
            card.add_attachment(text_message="\n\n".join([f"**{alert.title}**", *alert.lines]))
        else:  # a Workflows webhook: an adaptive card, a text block per line
            card = AdaptiveCard()
            for line in [f"**{alert.title}**", *alert.lines]:
                card.add_attachment(text_message=line)
        client.post_message(payload=card.payload)
