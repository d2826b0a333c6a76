"""The IBM Telco Customer Churn table (one row per customer) as a churnwatch event stream.

Each customer becomes a ``profile`` event (plan = Contract, tenure_months = tenure, attrs =
the numeric columns plus the categoricals one-hot encoded as 0/1 attributes) followed one
second later by its label: ``churn`` (Churn = Yes) or ``active``. Customers are put in a
seeded random order, so the labels are not sorted, and spaced one minute apart from
2026-01-01T00:00:00Z. The subscriber id is a pseudonym derived from ``customerID``.

The table has no timestamps, logins, complaints or usage: the behavioural features stay at
their empty-history values and the model learns from the profile attributes and tenure.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import orjson

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 60_000  # one customer per minute
LABEL_DELAY_MS = 1_000  # the label follows its profile a second later

# Yes/No columns → one 0/1 attribute (1 = Yes).
_FLAGS = {
    "Partner": "partner",
    "Dependents": "dependents",
    "PhoneService": "phone_service",
    "PaperlessBilling": "paperless_billing",
}
# Yes / No / "No phone service" / "No internet service" columns → 1 only for Yes; the "no
# service" case is already carried by phone_service / internet_none.
_ADDONS = {
    "MultipleLines": "multiple_lines",
    "OnlineSecurity": "online_security",
    "OnlineBackup": "online_backup",
    "DeviceProtection": "device_protection",
    "TechSupport": "tech_support",
    "StreamingTV": "streaming_tv",
    "StreamingMovies": "streaming_movies",
}
# Multi-valued columns → one attribute per category (every category, so each is readable).
_ONE_HOT = {
    "InternetService": ("internet", {"DSL": "dsl", "Fiber optic": "fiber_optic", "No": "none"}),
    "Contract": ("contract", {"Month-to-month": "month_to_month", "One year": "one_year",
                              "Two year": "two_year"}),
    "PaymentMethod": ("payment", {"Electronic check": "electronic_check",
                                  "Mailed check": "mailed_check",
                                  "Bank transfer (automatic)": "bank_transfer_automatic",
                                  "Credit card (automatic)": "credit_card_automatic"}),
}

ATTRS: tuple[str, ...] = (
    "monthly_charges", "total_charges", "senior_citizen", "gender_male",
    *_FLAGS.values(), *_ADDONS.values(),
    *(f"{prefix}_{suffix}" for prefix, values in _ONE_HOT.values() for suffix in values.values()),
)


def pseudonym(customer_id: str) -> str:
    """A stable opaque subscriber id for a customerID (never looks like a phone number)."""
    digest = hashlib.sha256(f"churnwatch-telco:{customer_id}".encode()).hexdigest()
    return f"tc-{digest[:16]}"


def _number(text: str) -> float:
    text = text.strip()
    return float(text) if text else 0.0  # TotalCharges is blank for the 11 tenure-0 customers


def row_attrs(row: dict[str, str]) -> dict[str, float]:
    """The profile attributes of one CSV row (every name in :data:`ATTRS`)."""
    attrs = {
        "monthly_charges": _number(row["MonthlyCharges"]),
        "total_charges": _number(row["TotalCharges"]),
        "senior_citizen": float(int(row["SeniorCitizen"])),
        "gender_male": float(row["gender"].strip() == "Male"),
    }
    for column, name in {**_FLAGS, **_ADDONS}.items():
        attrs[name] = float(row[column].strip() == "Yes")
    for column, (prefix, values) in _ONE_HOT.items():
        value = row[column].strip()
        if value not in values:
            raise ValueError(f"unknown {column} value {value!r}")
        for label, suffix in values.items():
            attrs[f"{prefix}_{suffix}"] = float(value == label)
    return attrs


def read_rows(csv_path: str | Path) -> list[dict[str, str]]:
    """The CSV rows in file order."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def telco_events(csv_path: str | Path, seed: int = 0) -> Iterator[dict]:
    """Profile + label event per customer, customers in a seeded random order."""
    rows = read_rows(csv_path)
    random.Random(seed).shuffle(rows)
    for k, row in enumerate(rows):
        sid = pseudonym(row["customerID"].strip())
        ts = T0_MS + k * STEP_MS
        churned = row["Churn"].strip() == "Yes"
        yield {"event_id": f"{sid}-profile", "subscriber_id": sid, "type": "profile", "ts": ts,
               "plan": row["Contract"].strip(), "tenure_months": float(int(row["tenure"])),
               "attrs": row_attrs(row)}
        yield {"event_id": f"{sid}-label", "subscriber_id": sid,
               "type": "churn" if churned else "active", "ts": ts + LABEL_DELAY_MS}


def write_telco_ndjson(csv_path: str | Path, out_path: str | Path, seed: int = 0) -> int:
    """Write :func:`telco_events` as NDJSON; return the number of events written."""
    n = 0
    with open(out_path, "wb") as out:
        for event in telco_events(csv_path, seed):
            out.write(orjson.dumps(event) + b"\n")
            n += 1
    return n
