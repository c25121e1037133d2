"""The generated documentation pages are current: regenerate them when this fails."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_cli_reference_matches_the_commands():
    from fedsyft.cli.reference import render

    assert (ROOT / "docs" / "cli.md").read_text() == render(), \
        "docs/cli.md is stale: run '.venv/bin/python -m fedsyft.cli.reference > docs/cli.md'"
