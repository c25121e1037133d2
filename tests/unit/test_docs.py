"""The generated documentation pages are current: regenerate them when this fails."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_reference_matches_the_commands():
    from fedsyft.cli.reference import render

    assert (ROOT / "docs" / "cli.md").read_text() == render(), \
        "docs/cli.md is stale: run '.venv/bin/python -m fedsyft.cli.reference > docs/cli.md'"


README_MAX_LINES = 220


def _headings_slugs(text: str) -> set[str]:
    """The anchors GitHub makes of a Markdown page's headings (lower case, punctuation dropped, spaces to '-')."""
    import re

    slugs: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _without_code_blocks(text), flags=re.M):
        base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slug, n = base, 1
        while slug in slugs:  # repeated headings get -1, -2, ...
            slug, n = f"{base}-{n}", n + 1
        slugs.add(slug)
    return slugs


def _without_code_blocks(text: str) -> str:
    import re

    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)


def _relative_links(text: str) -> list[str]:
    """Targets of the page's Markdown links and images that point into the repository (not to a web address)."""
    import re

    prose = re.sub(r"`[^`\n]*`", "", _without_code_blocks(text))  # inline code is not a link
    targets = re.findall(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, flags=re.I)]


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move reference text to docs/ and history "
        "to CHANGELOG.md")


def test_every_relative_link_in_the_readme_and_docs_points_to_a_file_that_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in _relative_links(page.read_text()):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _headings_slugs(file.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading in {file.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)
