"""Without kopf's peering CRDs the operator says so, and runs standalone unless told to wait."""

from __future__ import annotations

import pytest

from ferry.operator.running import peering_plan
from ferry.operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_installed_peering_is_used_silently() -> None:
    assert peering_plan(OperatorSettings(), installed=True) == ("ferry", None)


def test_the_default_peering_falls_back_to_standalone_and_says_why() -> None:
    name, warning = peering_plan(OperatorSettings(), installed=False)
    assert name is None
    assert warning is not None
    assert "clusterkopfpeerings.kopf.dev is not installed: running standalone" in warning


def test_asked_for_peering_waits_and_names_what_it_waits_for() -> None:
    settings = OperatorSettings(namespaces=["shop"], peering="blue", peering_required=True)
    name, warning = peering_plan(settings, installed=False)
    assert name == "blue"
    assert warning is not None
    assert warning.startswith("waiting for the CRD kopfpeerings.kopf.dev")


def test_standalone_needs_no_peering_resources() -> None:
    assert peering_plan(OperatorSettings(peering=None), installed=False) == (None, None)
