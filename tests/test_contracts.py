"""The published contracts (docs/schemas/, docs/openapi/) are generated from the code, kept
current, valid, and say what the code accepts: events the decoder takes match the event
schema, events it refuses for a structural reason do not."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from churnwatch.cli.main import app
from churnwatch.cli.schemas import documents, render
from churnwatch.core.errors import EventError
from churnwatch.core.events import EVENT_TYPES, decode_event
from streams.contract_schemas import CONTRACTS
from streams.ingest_openapi import REASON_KINDS
from tests.support.contracts import DOCS, errors

TS = 1_767_225_600_000
VALID = [
    {"event_id": "e1", "subscriber_id": "+44 7700 900123", "type": "spend", "ts": TS,
     "amount": 12.5, "kind": "recharge"},
    {"event_id": "e2", "subscriber_id": "0044 7700 900123", "type": "login",
     "ts": "2026-01-01T10:00:00+01:00", "channel": "web"},
    {"event_id": "e3", "subscriber_id": "cust-42", "type": "complaint", "ts": TS,
     "category": "billing"},
    {"event_id": "e4", "subscriber_id": "cust-42", "type": "usage", "ts": TS, "data_mb": 1,
     "sms": 3},
    {"event_id": "e5", "subscriber_id": "cust-42", "type": "plan_change", "ts": TS,
     "plan": "max", "monthly_fee": 40},
    {"event_id": "e6", "subscriber_id": "cust-42", "type": "profile", "ts": TS,
     "plan": "max", "tenure_months": 14, "attrs": {"contract_months": 12, "arpu": -1.5}},
    {"event_id": "e7", "subscriber_id": "cust-42", "type": "churn", "ts": TS,
     "reason": "port-out", "unknown_field": [1, 2]},
    {"event_id": "e8", "subscriber_id": "cust-42", "type": "active", "ts": TS},
    {"event_id": "e9", "subscriber_id": "cust-42", "type": "outcome", "ts": TS,
     "alert_id": "a1", "result": "no_contact"},
]
BASE = {"event_id": "x", "subscriber_id": "cust-42", "ts": TS}
INVALID = [
    {**BASE, "type": "spend"},  # no amount
    {**BASE, "type": "spend", "amount": -1},
    {**BASE, "type": "spend", "amount": "12"},
    {**BASE, "type": "complaint", "category": "weather"},
    {**BASE, "type": "teleport"},
    {"event_id": "x", "subscriber_id": "cust-42", "type": "login"},  # no ts
    {**BASE, "event_id": "", "type": "login"},
    {**BASE, "event_id": "e" * 129, "type": "login"},
    {**BASE, "ts": 12, "type": "login"},  # before 2000
    {**BASE, "ts": "yesterday", "type": "login"},
    {**BASE, "type": "outcome", "alert_id": "a1", "result": "maybe"},
    {**BASE, "type": "profile", "attrs": {"x": "high"}},
    {**BASE, "type": "usage", "data_mb": 2e9},
]


def test_the_published_files_are_what_the_code_generates() -> None:
    for name, document in documents().items():
        path = DOCS / name
        assert path.is_file() and path.read_text() == render(document), (
            f"docs/{name} is stale: run `churnwatch schemas` and commit it")


def test_the_check_fails_on_a_stale_or_missing_file(tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["schemas", str(tmp_path)]).exit_code == 0
    assert CliRunner().invoke(app, ["schemas", str(tmp_path), "--check"]).exit_code == 0
    alert = tmp_path / "schemas" / "alert.schema.json"
    alert.write_text(alert.read_text().replace('"alert_id"', '"alert"', 1))
    (tmp_path / "openapi" / "web.json").unlink()
    result = CliRunner().invoke(app, ["schemas", str(tmp_path), "--check"])
    assert result.exit_code == 1 and "churnwatch schemas" in result.output
    assert "alert.schema.json" in result.output and "web.json" in result.output
    assert CliRunner().invoke(app, ["schemas", str(DOCS), "--check"]).exit_code == 0


@pytest.mark.parametrize("name", list(CONTRACTS))
def test_every_schema_is_valid_2020_12_with_titles_from_the_code(name: str) -> None:
    schema = json.loads((DOCS / "schemas" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["title"] and schema["description"] and schema["$defs"]
    assert all(d.get("title") for d in schema["$defs"].values())


def test_the_event_schema_describes_every_event_type_from_its_docstring() -> None:
    defs = json.loads((DOCS / "schemas" / "event.schema.json").read_text())["$defs"]
    by_type = {d["properties"]["type"]["enum"][0]: d for d in defs.values()
               if "type" in d.get("properties", {})}
    assert sorted(by_type) == sorted(EVENT_TYPES)
    assert by_type["spend"]["description"].startswith("Money the subscriber spent")
    assert all(d["description"] and "\n" not in d["description"] for d in by_type.values())


@pytest.mark.parametrize("event", VALID, ids=lambda e: e["type"])
def test_events_the_decoder_accepts_match_the_schema(event: dict) -> None:
    decode_event(orjson.dumps(event))
    assert errors("event", event) == []


@pytest.mark.parametrize("event", INVALID, ids=lambda e: str(e)[-60:])
def test_events_the_decoder_refuses_do_not_match_the_schema(event: dict) -> None:
    with pytest.raises(EventError):
        decode_event(orjson.dumps(event))
    assert errors("event", event), event


def test_the_ingest_document_lists_every_rejection_kind_and_problem_answers() -> None:
    doc = json.loads((DOCS / "openapi" / "ingest.json").read_text())
    schemas = doc["components"]["schemas"]
    assert set(schemas["Rejection"]["properties"]["kind"]["enum"]) == {*REASON_KINDS, "forbidden"}
    post = doc["paths"]["/v1/events"]["post"]["responses"]
    for status, response in post.items():
        if status != "200":
            assert list(response["content"]) == ["application/problem+json"], status
    assert {"SpendEvent", "OutcomeEvent", "Problem", "IngestResult"} <= set(schemas)


def test_the_web_document_is_versioned_and_its_refs_resolve() -> None:
    doc = json.loads((DOCS / "openapi" / "web.json").read_text())
    assert doc["servers"] == [{"url": "/api/v1"}]
    assert set(doc["paths"]) == {"/alerts", "/meta", "/subscribers/{subscriber}", "/effect",
                                 "/outcomes"}
    text = json.dumps(doc)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs and refs <= set(doc["components"]["schemas"]), refs
