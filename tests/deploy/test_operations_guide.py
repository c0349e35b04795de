"""docs/operations.md keeps up with the code: every setting and metric is described."""

from __future__ import annotations

import importlib
import re

from prometheus_client import REGISTRY

from tests.deploy.files import ALL_SETTINGS, ROOT

GUIDE = ROOT / "docs" / "operations.md"


def test_every_setting_has_a_row_in_the_settings_table() -> None:
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", GUIDE.read_text(), re.MULTILINE))
    assert not ALL_SETTINGS - rows, sorted(ALL_SETTINGS - rows)


def test_every_relay_metric_is_described() -> None:
    importlib.import_module("relay_service.metrics")  # registers the relay's metrics
    text = GUIDE.read_text()
    names = {family.name for family in REGISTRY.collect() if family.name.startswith("relay_")}
    assert "relay_connections" in names
    assert not {name for name in names if f"`{name}" not in text}


def test_measured_figures_placeholder_is_marked() -> None:
    text = GUIDE.read_text()
    assert "### Measured figures" in text
