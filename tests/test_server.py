"""How `liaotian serve` starts: the uvicorn it runs on."""

from __future__ import annotations

import pytest
import uvicorn

from liaotian.cli import main
from liaotian.transport import UVICORN_VERSION


def test_serve_refuses_to_start_on_another_uvicorn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a uvicorn other than the one its protocols were written for, `liaotian serve`
    exits with status 2 and a message naming both versions and the fix."""
    monkeypatch.setattr(uvicorn, "__version__", "0.55.0")
    # An invalid port too: without the check, serve fails on it, not on uvicorn's version.
    assert main(["serve", "--port", "70000"]) == 2
    message = capsys.readouterr().err
    assert f"uvicorn {UVICORN_VERSION}" in message
    assert "uvicorn 0.55.0 is installed" in message
    assert f"uvicorn[standard]=={UVICORN_VERSION}" in message
