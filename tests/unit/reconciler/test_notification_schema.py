"""schemas/v1/notification.schema.json: a valid draft 2020-12 schema whose examples pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "v1" / "notification.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_schema_is_valid(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://configctl.dev/schemas/v1/notification.schema.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {
        "id", "app", "env", "version", "previous_version", "commit", "changed_keys", "time", "reason",
    }


def test_examples_are_valid(schema: dict[str, Any], validator: Draft202012Validator) -> None:
    assert len(schema["examples"]) >= 2
    for example in schema["examples"]:
        validator.validate(example)


def _good(schema: dict[str, Any]) -> dict[str, Any]:
    return dict(schema["examples"][0])


@pytest.mark.parametrize(
    "change",
    [
        {"id": "not-a-uuid"},
        {"app": "Billing"},
        {"env": "prod.eu"},
        {"version": 0},
        {"version": "12"},
        {"previous_version": 0},
        {"commit": "HEAD"},
        {"changed_keys": "a.b"},
        {"changed_keys": ["a", "a"]},
        {"time": "yesterday"},
        {"reason": "manual"},
        {"values": {"password": "x"}},  # additionalProperties: values never travel
    ],
)
def test_invalid_messages(schema: dict[str, Any], validator: Draft202012Validator, change: dict[str, Any]) -> None:
    doc = {**_good(schema), **change}
    assert list(validator.iter_errors(doc)), change


@pytest.mark.parametrize("field", ["id", "previous_version", "commit", "changed_keys", "reason"])
def test_required(schema: dict[str, Any], validator: Draft202012Validator, field: str) -> None:
    doc = _good(schema)
    del doc[field]
    assert list(validator.iter_errors(doc))


def test_nullable_fields(schema: dict[str, Any], validator: Draft202012Validator) -> None:
    validator.validate({**_good(schema), "previous_version": None, "commit": None, "version": 1})
