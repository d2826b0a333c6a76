"""``docs/schemas/`` and ``docs/openapi/``: the published JSON Schemas of events, alerts,
score records, webhook bodies and error bodies, and the OpenAPI documents of the HTTP ingest
and the web API, all generated from the code (:mod:`streams.contract_schemas`,
:mod:`streams.ingest_openapi`, :mod:`churnwatch.web.openapi`). ``churnwatch schemas
--check`` (run by the tests) fails when a committed file and the code disagree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from churnwatch.infra.config import Settings
from churnwatch.web.openapi import openapi_document as web_openapi
from streams.contract_schemas import json_schemas
from streams.ingest_openapi import openapi_document as ingest_openapi


def documents() -> dict[str, Any]:
    """Every published document by its path under docs/. The ingest's limits are the
    defaults (a running ingest serves its configured ones at /openapi.json)."""
    defaults = Settings.model_fields
    out: dict[str, Any] = {f"schemas/{name}": schema for name, schema in json_schemas().items()}
    out["openapi/ingest.json"] = ingest_openapi(defaults["ingest_max_body_bytes"].default,
                                                defaults["ingest_max_events"].default)
    out["openapi/web.json"] = web_openapi()
    return out


def render(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write(docs: Path) -> list[Path]:
    """Write every document under ``docs``; the paths written."""
    written = []
    for name, document in documents().items():
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document))
        written.append(path)
    return written


def stale(docs: Path) -> list[str]:
    """The documents under ``docs`` that are missing or differ from the code."""
    return [name for name, document in documents().items()
            if not (docs / name).is_file() or (docs / name).read_text() != render(document)]
