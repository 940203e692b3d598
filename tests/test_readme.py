"""README.md stays short and its links (and those of docs/) lead to pages and headings that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Pages written on other branches, linked before they are merged; remove a name once its page is here.
ELSEWHERE: set[str] = set()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings inside code blocks
    return {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_slug_matches_github():
    assert slug("Fine-tuning to a new voice (`bash benchmarks/finetune.sh`)") == (
        "fine-tuning-to-a-new-voice-bash-benchmarksfinetunesh"
    )


def test_readme_fits_in_250_lines_and_speaks_to_its_reader():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert not re.search(r"\b(issues?|targets?|sessions?)\b", text, flags=re.I)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_local_links_lead_somewhere(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            assert linked.name in ELSEWHERE, f"{page.name}: {target} does not exist"
            continue
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: no heading #{anchor} in {linked.name}"
