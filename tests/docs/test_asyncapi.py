"""docs/asyncapi.yaml is a valid AsyncAPI 3 document that describes the protocol the code speaks.

The AsyncAPI 3.0.0 JSON schema beside this file comes from the npm package
`@asyncapi/specs` 6.11.1 (`schemas/3.0.0.json`, Apache-2.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared.protocol import CLIENT_OPS, SERVER_OPS, CloseCode, Op

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
ASYNCAPI_SCHEMA = json.loads((Path(__file__).with_name("asyncapi-3.0.0.schema.json")).read_text())
MESSAGES: dict[str, Any] = DOCUMENT["components"]["messages"]


def payload_schema(message: dict[str, Any]) -> dict[str, Any]:
    """A message's payload schema, with the document's components to resolve its refs."""
    return {**message["payload"], "components": DOCUMENT["components"]}


def test_the_document_is_valid_asyncapi_3() -> None:
    jsonschema.validate(DOCUMENT, ASYNCAPI_SCHEMA)


def test_every_close_code_is_documented() -> None:
    documented = {int(code) for code in DOCUMENT["channels"]["gateway"]["x-close-codes"]}
    assert documented == {int(code) for code in CloseCode}


def test_every_opcode_has_a_message() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    described = {
        schemas[message["payload"]["$ref"].rsplit("/", 1)[1]]["properties"]["op"]["const"]
        for message in MESSAGES.values()
    }
    assert described == {int(op) for op in Op}
    assert {int(op) for op in CLIENT_OPS | SERVER_OPS} <= described


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_each_message_example_matches_its_schema(name: str) -> None:
    message = MESSAGES[name]
    assert message["examples"], f"{name} has no example"
    for example in message["examples"]:
        jsonschema.validate(example["payload"], payload_schema(message))


def test_a_client_frame_with_an_unknown_field_breaks_the_schema() -> None:
    frame = {"op": 4, "d": {"payload": 1, "targt": "factory-1"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(frame, payload_schema(MESSAGES["sendCommand"]))
