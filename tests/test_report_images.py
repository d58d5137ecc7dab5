"""The report's pictures: unit strips and paged HTML of a task=netdissect run, Fig. 8 and Fig. 4
images of a seg run, all drawn from the stores (no network rerun)."""

import re

import numpy as np
import pytest
from conftest import compose_config
from PIL import Image
from test_netdissect import bilinear_numpy

from net2vec.analysis import analyse
from net2vec.analysis.concept_images import decile_pairs, fig8_image, prediction, stored_images
from net2vec.analysis.dissection_report import dissection_images, load_dissection
from net2vec.analysis.images import StoredImages, outline
from net2vec.analysis.runs import load_run
from net2vec.run.pipeline import train


def test_outline_is_the_border_of_the_mask():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    edge = outline(mask, width=1)
    assert edge.sum() == 16 and not edge[3:6, 3:6].any() and (edge <= mask).all()


@pytest.fixture(scope="module")
def netdissect_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ndrun")
    cfg = compose_config(work, "network=planted", "task=netdissect", "task.top_images=5")
    train(cfg)
    return load_dissection(work / "run")


def test_unit_mask_is_the_thresholded_stored_map(netdissect_run):
    images = StoredImages(netdissect_run.summary["stores"], every_label=True)
    row, unit = int(netdissect_run.top_images[3, 0]), 3
    raw = images.acts.activations([row])[0, unit].astype(np.float64)
    expected = bilinear_numpy(raw[None], (48, 48))[0] > images.acts.thresholds[unit]
    np.testing.assert_array_equal(images.unit_mask(row, unit, 48), expected)
    assert expected.any()  # the top image of the unit shows it active


def test_report_pages_and_logger_images(netdissect_run, tmp_path):
    report = analyse([], tmp_path / "report", dissections=[netdissect_run.path], unit_images=4)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Network Dissection: planted/" in page and "page-001.html" in page
    folder = next((tmp_path / "report").glob("units-*"))
    pages = sorted(folder.glob("page-*.html"))
    units = len(netdissect_run.units)
    assert len(pages) == -(-units // 64) and len(list(folder.glob("unit-*.jpg"))) == units
    first = pages[0].read_text()
    shown = re.findall(r"<img loading='lazy' src='unit-(\d+).jpg'", first)
    best = netdissect_run.order()[:64]
    assert [int(u) for u in shown] == best
    strip = Image.open(folder / f"unit-{best[0]:04d}.jpg")
    assert strip.width == 4 * (96 + 3) - 3  # k tiles of 96 px
    assert any(name.startswith("netdissect_detectors") for name in report.figures)
    pairs = dissection_images(netdissect_run, k=2, units=[0, 1])
    assert [name.rsplit("/", 1)[1] for name, _ in pairs] == ["detectors", "unit_0000", "unit_0001"]
    assert isinstance(pairs[1][1], Image.Image) and pairs[1][1].width == 2 * 99 - 3


@pytest.mark.slow
def test_fig8_prediction_and_deciles(tmp_path):
    cfg = compose_config(tmp_path, "network=planted", "task.epochs=2")
    train(cfg)
    run = load_run(tmp_path / "run")
    images = stored_images(run)
    concept = int(np.bincount(run.embeddings.per_image["concept"]).argmax())
    rows, ious = decile_pairs(run, concept)
    assert 1 <= len(rows) <= 10 and (np.diff(ious) >= 0).all()
    weights, bias = run.embeddings.weights[concept], float(run.embeddings.bias[concept])
    maps = images.acts.thresholded([int(rows[-1])])[0].astype(np.float64)
    logit = np.tensordot(weights, maps, axes=1) + bias
    expected = bilinear_align_corners(logit, 40) > 0
    np.testing.assert_array_equal(
        prediction(images, int(rows[-1]), weights, bias, 40, True), expected
    )
    picture = fig8_image(run, images, concept, size=40)
    assert picture.width == len(rows) * 43 - 3
    report = analyse([run], tmp_path / "report", tsne=False)
    assert any(name.startswith("fig8_") for name in report.figures)


def bilinear_align_corners(z: np.ndarray, size: int) -> np.ndarray:
    """(h, w) -> (size, size) bilinear with corner pixels aligned."""

    def axis(n_in):
        src = np.arange(size) * (n_in - 1) / max(size - 1, 1)
        low = np.minimum(np.floor(src).astype(int), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    r0, r1, wr = axis(z.shape[0])
    c0, c1, wc = axis(z.shape[1])
    rows = z[r0] * (1 - wr)[:, None] + z[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc)[None] + rows[:, c1] * wc[None]
