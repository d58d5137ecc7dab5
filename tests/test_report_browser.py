"""The report as a user sees it: index.html of a seg (top-F), a cls and a netdissect run opened in
headless Chromium at 1400 × 900. The first screen holds the summary and the table of contents,
no element is wider than the page, every image loads, every contents link has its target; a unit
page likewise. Skipped when no Chromium/Chrome is installed (``apt-get install chromium``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import compose_config

from net2vec.analysis import analyse, load_run
from net2vec.run.pipeline import train

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)
SCREEN = (1400, 900)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None, reason="no Chromium/Chrome on PATH (apt-get install chromium)"
    ),
]

# Runs in the page once it has loaded (every image loaded or failed), then writes its findings as
# JSON into <pre id='check'>, which --dump-dom prints.
CHECK = """<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth, wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.parentElement.closest('.scroll')) continue;  // inside a box that scrolls sideways
    const box = el.getBoundingClientRect();
    if (box.right > width + 1) wide.push(`${el.tagName}.${el.className} ${Math.round(box.right)}`);
  }
  const span = (el) => { const b = el.getBoundingClientRect(); return [b.top + scrollY, b.bottom + scrollY]; };
  const out = {
    width, scroll_width: document.documentElement.scrollWidth, wide,
    images: [...document.images].map((i) => [i.getAttribute('src'), i.complete && i.naturalWidth > 0, span(i)[0]]),
    summary: document.getElementById('summary') ? span(document.getElementById('summary')) : null,
    toc: document.getElementById('toc') ? span(document.getElementById('toc')) : null,
    links: [...document.querySelectorAll('#toc a')].map((a) => a.getAttribute('href')),
    ids: [...document.querySelectorAll('[id]')].map((e) => e.id),
  };
  const pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args: str, timeout: int = 60) -> str:
    """Run headless Chromium; its stdout."""
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    done = subprocess.run(
        [*command, f"--window-size={SCREEN[0]},{SCREEN[1]}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def inspect(page: Path) -> dict:
    """What CHECK finds on ``page`` (a copy with the script, beside it so relative links hold)."""
    probe = page.with_name(f"check-{page.name}")
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", probe.as_uri())
    found = re.search(r"<pre id=\"check\">(.*?)</pre>", dom, re.S)
    assert found, dom[-2000:]
    return json.loads(
        found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )


def screenshot(page: Path, out: Path) -> Path:
    """The first screen of ``page`` as a PNG."""
    chromium("--virtual-time-budget=20000", f"--screenshot={out}", page.as_uri())
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """index.html over three small planted runs: seg with top-F subsets, cls, netdissect."""
    work = tmp_path_factory.mktemp("browser")
    runs = []
    for name, overrides in (
        ("seg", ["probe.subsets=[1,4,16]"]),
        ("cls", ["task=cls", "probe.subsets=[1,4,16]"]),
        ("netdissect", ["task=netdissect", "task.top_images=4"]),
    ):
        cfg = compose_config(
            work / name,
            "network=planted",
            *overrides,
            f"paths.data_dir={work}/data",
            cache=work / "cache",
        )
        train(cfg)
        runs.append(work / name / "run")
    analyse(
        [load_run(runs[0]), load_run(runs[1])],
        work / "report",
        tsne=False,
        dissections=[runs[2]],
        unit_images=4,
    )
    return work / "report" / "index.html"


def test_first_screen_holds_the_summary_and_contents(report):
    found = inspect(report)
    assert found["toc"][1] <= SCREEN[1] and found["summary"][1] <= SCREEN[1], found
    text = report.read_text()
    summary = text[text.index("<div id='summary'>") :]
    for headline in ("all ≥ single", "planted/conv5/seg", "planted/conv5/cls", "detectors"):
        assert headline in summary[: summary.index("<h2 id=")], headline
    first_screen = [src for src, _, top in found["images"] if top < SCREEN[1]]
    assert {"fig3_subsets.png"} <= set(first_screen) and any(
        s.startswith("fig8_") for s in first_screen
    )
    assert any(s.startswith("summary_units_") for s in first_screen), first_screen
    targets = [link[1:] for link in found["links"]]
    assert {"summary", "table1", "fig3", "fig8", "netdissect", "statistics"} <= set(targets)
    assert set(targets) <= set(found["ids"]), set(targets) - set(found["ids"])


def test_no_element_is_wider_than_the_page_and_every_image_loads(report):
    found = inspect(report)
    assert found["scroll_width"] <= found["width"] and not found["wide"], found["wide"]
    assert len(found["images"]) >= 10
    assert [src for src, loaded, _ in found["images"] if not loaded] == []
    unit_page = next(report.parent.glob("units-*/page-001.html"))
    found = inspect(unit_page)
    assert found["scroll_width"] <= found["width"] and not found["wide"], found["wide"]
    shown = [loaded for _, loaded, top in found["images"] if top < SCREEN[1]]
    assert shown and all(shown)  # lazily loaded: those on the first screen


def test_screenshot_is_the_size_of_the_screen(report, tmp_path):
    from PIL import Image

    with Image.open(screenshot(report, tmp_path / "first.png")) as image:
        assert image.size == SCREEN
