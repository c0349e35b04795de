"""The project's own docs stand alone and show the code that runs.

A clone has nothing outside the repository, so no doc may send its reader to
`../shared` or to "SPEC.md"; `docs/protocol.md` documents exactly the opcodes and close
codes the code has; and the bridge that `docs/clients.md` shows is the very file the
client tests run (`docs/examples/bridge.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.protocol import RESERVED_EVENT_NAMES, CloseCode, Op

ROOT = Path(__file__).resolve().parents[2]
PROJECT_DOCS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        ROOT / "docs" / "asyncapi.yaml",
        ROOT / "auth_service" / "console" / "README.md",
    ]
)
OUTSIDE_REFERENCE = re.compile(r"(?i:\.\./shared|SPEC\.md)|\bthe SPEC\b|\bSPEC section")
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def first_column(title: str) -> set[int]:
    """The integers in the first column of the tables in protocol.md's section `title`."""
    heading = re.search(rf"^### [\d.]+ {re.escape(title)}$", PROTOCOL, re.MULTILINE)
    assert heading, f"protocol.md has no section {title!r}"
    section = PROTOCOL[heading.end() :].split("\n#", 1)[0]
    return {int(number) for number in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}


@pytest.mark.parametrize("path", PROJECT_DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_doc_sends_no_reader_outside_the_repository(path: Path) -> None:
    lines = path.read_text().splitlines()
    found = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(lines, 1)
        if OUTSIDE_REFERENCE.search(line)
    ]
    assert found == []


def test_the_bridge_in_clients_md_is_the_example_file() -> None:
    shown = PYTHON_BLOCK.findall((ROOT / "docs" / "clients.md").read_text())
    example = (ROOT / "docs" / "examples" / "bridge.py").read_text()
    assert example in shown


def test_protocol_md_documents_every_opcode_and_no_other() -> None:
    assert first_column("Opcodes") == {int(op) for op in Op}


def test_protocol_md_documents_every_close_code_and_no_other() -> None:
    assert first_column("Closing") == {int(code) for code in CloseCode}


def test_protocol_md_names_every_reserved_event_name_and_no_other() -> None:
    sentence = PROTOCOL.split("An event's name `t`", 1)[1].split("reserved for the", 1)[0]
    assert set(re.findall(r"`([A-Z_]+)`", sentence)) == RESERVED_EVENT_NAMES
