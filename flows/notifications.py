"""Notifications as Prefect automations: a webhook on every gate decision (``headstart.gate.decided``, emitted by
the publish step) and on every failed or crashed pipeline run of the model (Prefect's own flow-run events; each
pipeline run carries its model's tag from its creation: :func:`model_tag`).

``headstart serve`` creates them; the Prefect server's triggers service sends them, so nothing in a run waits on
the receiving end. The URL lives in a Prefect ``Webhook`` block (a secret field): it is never logged.
"""

from __future__ import annotations

import os

from headstart.ground.errors import ConfigError
from headstart.ground.params import Params
from tasks.publish import GATE_DECIDED

WEBHOOK_ENV = "HEADSTART_WEBHOOK_URL"
PIPELINE_FLOWS = ["retrain", "sweep"]  # the pipeline's flows: failures notified, runs counted (not the watcher)
# One JSON body for both kinds: the event's id (the receiver's idempotency key: a decision's is derived from
# model and version, so a delivery repeated after a server restart carries the same one), its name, what it is
# about, and its payload (the decision's figures, or the failed run's state).
PAYLOAD = (
    '{"id": "{{ event.id }}", "event": {{ event.event | tojson }}, "occurred": "{{ event.occurred }}", '
    '"resource": {{ event.resource | tojson }}, "payload": {{ event.payload | tojson }}}'
)


def webhook_url(params: Params) -> str | None:
    """``$HEADSTART_WEBHOOK_URL`` when set, else ``notify.webhook_url`` (None: no notifications). Refused unless
    it is an http(s) URL with a host; the message never repeats the URL (it may hold a token)."""
    url = os.environ.get(WEBHOOK_ENV) or params.notify.webhook_url
    if url is None:
        return None
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        where = f"${WEBHOOK_ENV}" if os.environ.get(WEBHOOK_ENV) else "notify.webhook_url"
        raise ConfigError(f"{where}: not an http(s) URL with a host (e.g. https://hooks.example.com/...)")
    return url


def model_tag(model_name: str) -> str:
    """The tag a pipeline run carries for its model: what the model's failure automation matches (one Prefect
    server may serve several models). A run must carry it from its creation (``prefect.tags`` around the flow
    call, or its deployment's tags): Prefect's state-change events name the tags the run was created with, not
    tags added while it runs (seen here: a tag added from inside the run was on the run, not on its Failed
    event)."""
    return f"headstart-model:{model_name}"


def block_name(model_name: str) -> str:
    """The model's own Webhook block (models served on one Prefect server never share a receiver). Block names
    are lowercase letters, digits and dashes; model names also have upper case, ``.`` and ``_``, so the readable
    part alone would map ``fashion-mnist``, ``fashion.mnist`` and ``Fashion_MNIST`` to one block: the sha256 of the
    exact name follows it."""
    import hashlib

    readable = "".join(c if c.isalnum() else "-" for c in model_name.lower())
    return f"headstart-notify-{readable}-{hashlib.sha256(model_name.encode()).hexdigest()[:12]}"


def automation_names(model_name: str) -> dict[str, str]:
    """The automations serve keeps for a model, by kind."""
    return {"decision": f"headstart {model_name}: gate decision", "failure": f"headstart {model_name}: run failed"}


def ensure_notifications(url: str, model_name: str) -> list[str]:
    """Create (or replace) the webhook block and the two automations; returns their names. Replacing keeps one
    automation per kind however often serve starts, and a changed URL takes effect."""
    from prefect.automations import Automation, CallWebhook, EventTrigger, Posture
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client

    block = block_name(model_name)
    block_id = Webhook(url=url, headers={"Content-Type": "application/json"}).save(block, overwrite=True)
    names = automation_names(model_name)
    triggers = {
        "decision": EventTrigger(
            expect={GATE_DECIDED},
            match={"prefect.resource.id": f"headstart.model.{model_name}"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        "failure": EventTrigger(  # this model's pipeline runs only: both related resources must be there
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=[
                {"prefect.resource.role": "flow", "prefect.resource.name": PIPELINE_FLOWS},
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{model_tag(model_name)}"},
            ],
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
                description=f"POST to the {block} webhook block",
                trigger=triggers[kind],
                actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
            ).create()
    return list(names.values())


def remove_notifications(model_name: str) -> None:
    """Delete the model's notification automations (serve without a URL: notifications off). The block stays,
    unused."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in automation_names(model_name).values():
            for existing in client.read_automations_by_name(name):
                client.delete_automation(existing.id)


def configure_notifications(params: Params, model_name: str) -> list[str]:
    """What ``headstart serve`` does: with a webhook URL, (re)create the model's automations and return their
    names; without one, delete them (notifications off) and return none."""
    url = webhook_url(params)
    if url:
        return ensure_notifications(url, model_name)
    remove_notifications(model_name)
    return []
