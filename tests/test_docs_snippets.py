"""The README and every docs page show code that runs: each page's ```python blocks are executed in order,
in one namespace (later blocks build on earlier ones), in a scratch folder.
(docs/guide.md and docs/explain.md run block by block in tests/explain/test_docs.py.)"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted(p for p in (REPO / "docs").glob("*.md") if p.name not in ("guide.md", "explain.md"))


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_page_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(page)):
        exec(compile(block, f"{page.name} block {i}", "exec"), namespace)


def test_readme_shows_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert "make demo" in text and "make test" in text
