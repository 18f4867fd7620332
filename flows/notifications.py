"""Notifications as Prefect automations: a webhook on every gate decision (``headstart.gate.decided``, emitted by
the publish step) and on every failed or crashed pipeline run (Prefect's own flow-run events).

``headstart serve`` creates them; the Prefect server's triggers service sends them, so nothing in a run waits on
the receiving end. The URL lives in a Prefect ``Webhook`` block (a secret field): it is never logged.
"""

from __future__ import annotations

import os

from headstart.ground.params import Params
from tasks.publish import GATE_DECIDED

WEBHOOK_ENV = "HEADSTART_WEBHOOK_URL"
BLOCK_NAME = "headstart-notify"
PIPELINE_FLOWS = ["retrain", "sweep"]  # the flows whose failures are reported (not the watcher's)
# One JSON body for both kinds: the event's name, what it is about, and its payload (the decision's figures, or
# the failed run's state).
PAYLOAD = (
    '{"event": {{ event.event | tojson }}, "occurred": "{{ event.occurred }}", '
    '"resource": {{ event.resource | tojson }}, "payload": {{ event.payload | tojson }}}'
)


def webhook_url(params: Params) -> str | None:
    """``$HEADSTART_WEBHOOK_URL`` when set, else ``notify.webhook_url`` (None: no notifications)."""
    return os.environ.get(WEBHOOK_ENV) or params.notify.webhook_url


def automation_names(model_name: str) -> dict[str, str]:
    """The automations serve keeps for a model, by kind."""
    return {"decision": f"headstart {model_name}: gate decision", "failure": f"headstart {model_name}: run failed"}


def ensure_notifications(url: str, model_name: str) -> list[str]:
    """Create (or replace) the webhook block and the two automations; returns their names. Replacing keeps one
    automation per kind however often serve starts, and a changed URL takes effect."""
    from prefect.automations import Automation, CallWebhook, EventTrigger, Posture
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client

    block_id = Webhook(url=url, headers={"Content-Type": "application/json"}).save(BLOCK_NAME, overwrite=True)
    names = automation_names(model_name)
    triggers = {
        "decision": EventTrigger(
            expect={GATE_DECIDED},
            match={"prefect.resource.id": f"headstart.model.{model_name}"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        "failure": EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": PIPELINE_FLOWS},
            posture=Posture.Reactive,
            threshold=1,
        ),
    }
    with get_client(sync_client=True) as client:
        for kind, name in names.items():
            for existing in client.read_automations_by_name(name):
                client.delete_automation(existing.id)
            Automation(
                name=name,
                description=f"POST to the {BLOCK_NAME} webhook block",
                trigger=triggers[kind],
                actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
            ).create()
    return list(names.values())


def remove_notifications(model_name: str) -> None:
    """Delete the model's notification automations (the block stays: other models may share it)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in automation_names(model_name).values():
            for existing in client.read_automations_by_name(name):
                client.delete_automation(existing.id)
