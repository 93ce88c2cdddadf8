"""Every ```python snippet in the explain docs runs, and the figures the guide shows exist."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["guide.md", "explain.md"]


def snippets():
    for page in PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.S)):
            yield pytest.param(block, id=f"{page}-{i}")


@pytest.mark.parametrize("code", list(snippets()))
def test_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs snippet>", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("page", PAGES)
def test_pages_have_snippets_and_their_images_exist(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    assert "```python" in text
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (DOCS / target).is_file(), target
