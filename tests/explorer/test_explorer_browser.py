"""The explorer in a real browser: Playwright driving Debian's headless chromium (Playwright's own browser
download is not reachable here, so it is pointed at /usr/bin/chromium). Skipped, with the reason, only where
Playwright or chromium cannot be installed (`.ci/run` installs both)."""

import shutil
import time

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the 'playwright' package (the test extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def compiled_server(compiled_reverse):
    from glassformer.explorer import Explorer, subject_of
    from glassformer.explorer.server import Server

    srv = Server(Explorer(subject_of(compiled_reverse, name="reverse (compiled)"))).start()
    yield srv
    srv.stop()


def open_page(browser, url, errors):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("button.token")
    return page


def tokens(page):
    return page.locator("button.token").all_inner_texts()


def test_typing_updates_tokens_attention_and_predictions(browser, server, tmp_path):
    errors = []
    page = open_page(browser, server.url + "#attention", errors)
    page.fill("#input", "1 2 3")
    page.wait_for_function("document.querySelectorAll('button.token').length === 3")
    first = page.inner_text("#predictions")
    assert page.locator("table.pattern tbody tr").count() == 3  # one row per query
    page.fill("#input", "1 2 3 4 5 6")
    page.wait_for_function("document.querySelectorAll('table.pattern tbody tr').length === 6")
    assert tokens(page) == [f"{i}#{i + 1}" for i in range(6)]  # position, then the token
    page.wait_for_function("(t) => document.querySelector('#predictions').innerText !== t", arg=first)
    assert page.locator("button.minimap").count() == 4 and page.locator("table.heads-grid button.cell").count() == 8
    page.click("table.heads-grid button.cell >> nth=6")  # layer 1, head 2: the layer's patterns are fetched
    page.wait_for_function("document.querySelector('.head-detail h3').innerText === 'Layer 1, head 2'")
    page.hover("table.pattern tbody tr:nth-child(4) button.qtok")
    assert "#4 (3) looks at" in page.inner_text(".strips")
    page.screenshot(path=str(tmp_path / "attention.png"), full_page=True)
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    assert errors == []


def test_bad_input_is_explained_in_the_page(browser, server):
    errors = []
    page = open_page(browser, server.url, errors)
    page.fill("#input", "1 2 banana")
    page.wait_for_selector("#error:not([hidden])")
    assert "'banana' is not a token id" in page.inner_text("#error")
    assert page.get_attribute("#input", "aria-invalid") == "true"
    page.fill("#input", "1 2")
    page.wait_for_selector("#error", state="hidden")
    assert errors == []


def test_ablating_a_head_changes_the_output(browser, compiled_server):
    errors = []
    page = open_page(browser, compiled_server.url + "#intervene", errors)
    page.fill("#input", "abc")
    page.wait_for_function("document.querySelector('.program-output') && document.querySelector('.program-output').innerText === 'c b a'")
    page.click("button.comp[data-layer='1'][data-head='0']")
    page.wait_for_function("document.querySelector('.program-output').innerText !== 'c b a'")
    assert page.get_attribute("button.comp[data-layer='1'][data-head='0']", "aria-pressed") == "true"
    assert "without the intervention: c b a" in page.inner_text("#output")
    assert page.locator("table.effects tr.changed").count() >= 1 and "▲ changed" in page.inner_text("table.effects")
    page.click("button.comp[data-layer='1'][data-head='0']")  # toggled off again: the program is back
    page.wait_for_function("document.querySelector('.program-output').innerText === 'c b a'")
    assert errors == []


def test_expanding_a_step_shows_its_equation_and_numbers(browser, server):
    errors = []
    page = open_page(browser, server.url + "#forward", errors)
    page.fill("#input", "4 2")
    page.wait_for_selector("button.step")
    page.locator("button.step", has_text="head 0: softmax, row by row").first.click()
    page.wait_for_selector(".step-view math")
    view = page.inner_text(".step-view")
    assert "softmax, row by row" in view and "[q_pos=2, k_pos=2]" in view
    assert page.locator(".step-view figure.tensor").count() >= 1
    page.click(".head-picker button:has-text('3') >> nth=0")  # another head's steps
    page.wait_for_selector("button.step:has-text('head 3: scores')")
    assert errors == []


def test_keyboard_reaches_every_tab(browser, server):
    errors = []
    page = open_page(browser, server.url, errors)
    page.focus("#tab-forward")
    names = []
    for _ in range(5):
        page.keyboard.press("ArrowRight")
        names.append(page.evaluate("document.activeElement.id"))
    assert names == ["tab-attention", "tab-residual", "tab-intervene", "tab-generate", "tab-program"]
    assert page.get_attribute("#tab-program", "aria-selected") == "true" and page.is_visible("#panel-program")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Tab")  # into the panel: its controls are reachable
    assert page.evaluate("document.activeElement.closest('[role=tabpanel]') !== null")
    page.keyboard.press("Enter")
    assert errors == []


def test_sampling_and_compiled_program_views(browser, server, compiled_server):
    errors = []
    page = open_page(browser, server.url + "#generate", errors)
    page.fill("#input", "1 2")
    page.wait_for_function("document.querySelectorAll('button.token').length === 2")
    page.click("#step-one")
    page.wait_for_function("document.querySelectorAll('button.token').length === 3")
    assert "KV cache: reused 0 positions, fed 2 new" in page.inner_text("#panel-generate")
    page.click("#step-one")
    page.wait_for_function("document.querySelectorAll('button.token').length === 4")
    assert "reused 2 positions, fed 1 new" in page.inner_text("#panel-generate")
    page = open_page(browser, compiled_server.url + "#program", errors)
    page.fill("#input", "abca")
    page.wait_for_selector("button.chip[data-sop='reverse']")
    time.sleep(0.2)
    page.click("button.chip[data-sop='reverse']")
    page.wait_for_selector("table.sop")
    text = page.inner_text("table.sop")
    assert "reverse=a" in text and "reverse=c" in text
    assert errors == []


def test_compare_marks_the_positions_that_differ(browser, decoder):
    import torch

    from glassformer.explorer import Explorer, subject_of
    from glassformer.explorer.server import Server

    torch.manual_seed(1)
    other = type(decoder)(decoder.config).eval()
    srv = Server(Explorer(subject_of(decoder, name="A"), subject_of(other, name="B"))).start()
    try:
        errors = []
        page = open_page(browser, srv.url + "#compare", errors)
        page.fill("#input", "1 2 3 4 5")
        page.wait_for_function("document.querySelectorAll('#panel-compare table.effects tbody tr').length === 5")
        out = Explorer(subject_of(decoder), subject_of(other)).run({"text": "1 2 3 4 5", "compare": True})
        differs = out["compare"]["diff"]["top1_differs"]
        assert 0 < sum(differs) < 5  # a test of the marking, not of a constant
        assert page.locator("#panel-compare tr.changed").count() == sum(differs)
        assert page.locator("#panel-compare .diffs .stok").count() == 4  # one per head of the layer
        assert errors == []
    finally:
        srv.stop()


def test_a_gpt2_shaped_model_stays_one_screen_per_view(browser):
    """12 layers x 12 heads: one table of 144 scores, the 12 heads of one layer, one pattern; not 144 panels."""
    import torch

    from glassformer import ModelConfig, Transformer
    from glassformer.explorer import Explorer, subject_of
    from glassformer.explorer.server import Server

    torch.manual_seed(0)
    model = Transformer(ModelConfig(arch="decoder", d_model=48, n_layers=12, n_heads=12, d_vocab=20, n_ctx=32)).eval()
    srv = Server(Explorer(subject_of(model))).start()
    try:
        errors = []
        page = open_page(browser, srv.url + "#attention", errors)
        page.wait_for_selector("table.heads-grid")
        assert page.locator("table.heads-grid button.cell").count() == 144
        assert page.locator("button.minimap").count() == 12 and page.locator("table.pattern").count() == 1
        page.select_option("#layer", "11")
        page.wait_for_function("document.querySelector('.head-detail h3').innerText === 'Layer 11, head 0'")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # nothing wider than the window
        page.click("#tab-intervene")
        assert page.locator("button.comp").count() == 12 * 13
        page.click("#tab-forward")
        page.wait_for_selector(".head-picker")
        assert page.locator(".head-picker >> nth=0").locator("button").count() == 12
        assert errors == []
    finally:
        srv.stop()
