"""Remake the explorer screenshots of docs/explorer.md: a trained model (reverse, trained here in ~20 s),
a compiled RASP program (sort), a Hugging Face import (a small random GPT-2) and a GPT-2-shaped model
(12 layers x 12 heads), each served by the real explorer and photographed in headless chromium at 1280 px.

    python docs/figures/explorer_screenshots.py          (needs the explore and test extras, and chromium)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
OUT = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def models(tmp: Path) -> dict[str, Path]:
    from glassformer import ModelConfig, rasp
    from glassformer.train import TrainConfig, Trainer, get_task, model_for_task

    torch.manual_seed(0)
    task = get_task("reverse", length=6)
    model = model_for_task(task, "decoder", d_model=64, n_layers=2, n_heads=4)
    Trainer(model, task, TrainConfig(steps=400, lr=3e-3, quiet=True, out_dir=str(tmp / "reverse"))).train()
    rasp.compile(rasp.library.get("sort"), vocab="abcd", max_len=6).save(tmp / "sort")
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32)).save_pretrained(tmp / "gpt2-tiny")
    big = ModelConfig(arch="decoder", d_model=192, n_layers=12, n_heads=12, d_vocab=64, n_ctx=64)
    (tmp / "gpt2-shape.json").write_text(json.dumps(big.to_dict()))
    return {"trained": tmp / "reverse", "compiled": tmp / "sort", "imported": tmp / "gpt2-tiny", "wide": tmp / "gpt2-shape.json"}


def shoot(browser, path: Path, actions, name: str, full_page: bool = False) -> None:
    from glassformer.explorer import Explorer
    from glassformer.explorer.server import Server

    server = Server(Explorer.open(path)).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(server.url)
        page.wait_for_selector("button.token")
        actions(page)
        time.sleep(0.8)
        page.screenshot(path=str(OUT / f"explorer_{name}.png"), full_page=full_page)
        print("wrote", OUT / f"explorer_{name}.png")
        page.close()
    finally:
        server.stop()


def main() -> None:
    from playwright.sync_api import sync_playwright

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        paths = models(Path(tmp))
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)

        def forward(page):
            page.click("#tab-forward")
            page.locator("button.step", has_text="head 0: softmax, row by row").first.click()
            page.wait_for_selector(".step-view math")

        def attention(page):
            page.click("#tab-attention")
            page.click("table.heads-grid button.cell >> nth=6")
            page.wait_for_function("document.querySelector('.head-detail h3').innerText === 'Layer 1, head 2'")
            page.hover("table.pattern tbody tr:last-child button.qtok")

        def intervene(page):
            page.click("#tab-intervene")
            for h in range(4):  # every head of layer 0 (no single head matters alone: they share the copying)
                page.click(f"button.comp[data-layer='0'][data-head='{h}']")
                page.wait_for_function(f"document.querySelectorAll('button.comp.on').length === {h + 1}")
            page.wait_for_selector("table.effects tr.changed")

        def program(page):
            page.fill("#input", "dbcab")
            page.wait_for_function("document.querySelectorAll('button.token').length === 6")
            page.click("#tab-program")
            page.click("button.chip[data-sop='sort']")
            page.wait_for_selector("table.sop")

        def residual(page):
            page.fill("#input", "5 17 42 5 17 42 5")
            page.wait_for_function("document.querySelectorAll('button.token').length === 7")
            page.click("#tab-residual")
            page.wait_for_selector("table.lens")

        def wide(page):
            page.fill("#input", "1 2 3 4 5 6 7 8 1 2 3 4 5 6 7 8")
            page.wait_for_function("document.querySelectorAll('button.token').length === 16")
            page.click("#tab-attention")
            page.select_option("#detector", "induction")
            page.wait_for_selector("table.heads-grid")

        shoot(browser, paths["trained"], forward, "trained_forward")
        shoot(browser, paths["trained"], attention, "trained_attention")
        shoot(browser, paths["trained"], intervene, "trained_intervene")
        shoot(browser, paths["compiled"], program, "compiled_program")
        shoot(browser, paths["imported"], residual, "imported_residual")
        shoot(browser, paths["wide"], wide, "gpt2_shape_attention")
        browser.close()


if __name__ == "__main__":
    main()
