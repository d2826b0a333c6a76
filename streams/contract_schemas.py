"""JSON Schemas of what churnwatch takes and publishes, generated from the msgspec structs
that decode and encode it (docs/contract.md §2 and §4), so the schema is the code:

- ``event``: one input event (:data:`churnwatch.core.events.AnyEvent`);
- ``alert``: an alert on churn.alerts, the JSONL sink and the work queues
  (:class:`alerting.alert.Alert`);
- ``score``: a score record on churn.scores and the scores JSONL file
  (:class:`alerting.alert.ScoreRecord`);
- ``webhook``: the body of a webhook request (:class:`alerting.webhook.WebhookEnvelope`);
- ``problem``: an error body of the HTTP ingest and the web API (:class:`streams.problem.Problem`).

Titles and descriptions come from the structs' docstrings and field annotations.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from alerting.alert import Alert, ScoreRecord
from alerting.webhook import WebhookEnvelope
from churnwatch.core.events import AnyEvent
from streams.problem import Problem

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# name → (type, title, description of the document)
CONTRACTS: dict[str, tuple[Any, str, str]] = {
    "event": (AnyEvent, "churnwatch event",
              "One event as producers send it (Kafka churn.events or the HTTP ingest): an "
              "object whose `type` selects the fields. Unknown fields are ignored."),
    "alert": (Alert, "churnwatch alert",
              "An alert as published on churn.alerts, the JSONL sink and the work queues."),
    "score": (ScoreRecord, "churnwatch score record",
              "One scored event, as published on churn.scores and the scores JSONL file."),
    "webhook": (WebhookEnvelope, "churnwatch webhook body",
                "The body of a webhook request (Standard Webhooks envelope around an alert)."),
    "problem": (Problem, "churnwatch error body",
                "An error body (application/problem+json, RFC 9457) of the HTTP ingest and "
                "the web API."),
}


def tidy(node: Any) -> Any:
    """Descriptions on one line (docstrings keep their indentation otherwise)."""
    if isinstance(node, dict):
        return {k: " ".join(v.split()) if k == "description" and isinstance(v, str)
                else tidy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [tidy(v) for v in node]
    return node


def components(types: Iterable[Any], ref_template: str) -> tuple[list[dict[str, Any]],
                                                                    dict[str, Any]]:
    """msgspec's schemas of ``types`` and their shared components, tidied."""
    schemas, defs = msgspec.json.schema_components(list(types), ref_template=ref_template)
    return [tidy(s) for s in schemas], tidy(defs)


def json_schema(name: str) -> dict[str, Any]:
    """The standalone JSON Schema (2020-12) of contract ``name``."""
    kind, title, description = CONTRACTS[name]
    (root,), defs = components([kind], "#/$defs/{name}")
    return {"$schema": DIALECT, "$id": f"{name}.schema.json", "title": title,
            "description": description, **root, "$defs": defs}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every contract's schema by file name (``<name>.schema.json``)."""
    return {f"{name}.schema.json": json_schema(name) for name in CONTRACTS}
