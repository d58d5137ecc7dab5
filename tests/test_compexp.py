"""Compositional explanations (docs/compexp.md) against brute force, planted formulas and the
``compositional-explanations`` package's beam search on the same bitmaps and masks."""

import csv
import json
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from compexp_fixtures import planted_maps, random_maps
from conftest import compose_config

from net2vec.analysis.compexp_report import CompExpRun, attach_formulas
from net2vec.analysis.dissection_report import DissectionRun
from net2vec.analysis.evaluation import analyse
from net2vec.probes.compexp import explain_units
from net2vec.probes.compexp_task import CompExpOutcome
from net2vec.probes.formulas import AND, AND_NOT, OR, Formula, evaluate, length, parse
from net2vec.run.pipeline import train


def search(data, **settings):
    batches = data.batches()
    return explain_units(
        lambda _: batches, data.thresholds, data.labels(), data.mask_size, **settings
    )


def brute_iou(data, text: str, unit: int) -> float:
    """IoU of unit ``unit``'s A_k with the formula string's mask, from dense NumPy masks."""
    active = data.bitmaps()[unit]
    mask = evaluate(parse(text, data.names), data.label_mask)
    union = (active | mask).sum()
    return (active & mask).sum() / union if union else 0.0


def test_grammar_prints_parses_and_quotes():
    names = ["water", "traffic light", "OR", 'say "hi"']
    formula = Formula((0,)).extend(AND, 1).extend(AND_NOT, 2).extend(OR, 3)
    text = formula.text(names)
    assert text == '(((water AND "traffic light") AND NOT "OR") OR "say ""hi""")'
    assert parse(text, names) == formula.tree()
    nested = parse('(water OR ("OR" AND NOT water))', names)
    assert nested == ("OR", ("label", 0), ("AND NOT", ("label", 2), ("label", 0)))
    assert length(nested) == 3
    with pytest.raises(ValueError, match="unknown label 'river'"):
        parse("(water OR river)", names)
    with pytest.raises(ValueError, match="missing"):
        parse("(water OR water", names)
    with pytest.raises(ValueError, match="expected OR, AND or AND NOT"):
        parse("(water XOR water)", names)
    assert Formula((0, 1), (OR,)).key() == Formula((1, 0), (OR,)).key()
    assert Formula((0, 1), (AND_NOT,)).key() != Formula((1, 0), (AND_NOT,)).key()
    swapped = Formula((0, 1, 2), (AND, AND_NOT)), Formula((0, 2, 1), (AND_NOT, AND))
    assert swapped[0].key() == swapped[1].key()


def test_every_reported_formula_reproduces_its_iou():
    data = random_maps(seed=1)
    result = search(data, length=3, beam=5)
    checked = 0
    for unit, entries in enumerate(result.beams):
        assert entries, f"unit {unit} has no formula"
        for _, iou, formula in entries:
            assert brute_iou(data, formula.text(data.names), unit) == pytest.approx(iou, abs=1e-9)
            checked += 1
        atom = result.atom_iou[unit]
        assert entries[0][1] >= atom.max() - 1e-12
    assert checked == 5 * len(result.beams)


def test_planted_units_get_their_formula():
    data = planted_maps()
    result = search(data, length=3, beam=5)
    (union, union_iou, _), (minus, minus_iou, _) = result.best(0), result.best(1)
    assert union.key() == Formula((0, 2), (OR,)).key() and union_iou == pytest.approx(1.0)
    assert minus.text(data.names) == "(label3 AND NOT label4)" and minus_iou == pytest.approx(1.0)


def test_complexity_penalty_ranks_by_discounted_iou():
    data = random_maps(seed=2)
    plain, penalised = search(data, beam=3), search(data, beam=3, complexity_penalty=0.5)
    for entries in penalised.beams:
        scores = [score for score, _, _ in entries]
        assert scores == sorted(scores, reverse=True)
        for score, iou, formula in entries:
            assert score == pytest.approx(iou * 0.5 ** (len(formula) - 1))
    lengths = [len(plain.best(k)[0]) - len(penalised.best(k)[0]) for k in range(len(plain.beams))]
    assert min(lengths) >= 0 and max(lengths) > 0
    with pytest.raises(ValueError, match="complexity_penalty"):
        search(data, complexity_penalty=1.5)


@pytest.mark.parametrize("seed", [0, 3])
def test_same_best_iou_as_the_package_beam_search(seed):
    package = pytest.importorskip(
        "compositional_explanations.beam",
        reason="compositional-explanations (dev extra) compares net2vec's beam with the package's",
    )
    data = random_maps(seed=seed, images=30, labels=10, units=6)
    result = search(data, length=3, beam=5)
    pixels = int(np.prod(data.mask_size))
    masks = [torch.from_numpy(data.label_mask(c).reshape(-1, pixels)) for c in range(10)]
    for unit, active in enumerate(data.bitmaps()):
        best = package.compute_beam_explanations(
            bitmaps=torch.from_numpy(active.reshape(-1, pixels)),
            masks=masks,
            disjoint_info=None,
            length=3,
            beam_size=5,
            device=torch.device("cpu"),
        )
        text = _package_text(best, data.names)
        theirs = brute_iou(data, text, unit)
        assert result.best(unit)[1] == pytest.approx(theirs, abs=1e-6), (unit, text)


def _package_text(node, names) -> str:
    """The package's formula tree in net2vec's grammar."""
    kind = type(node).__name__
    if kind == "Leaf":
        return f'"{names[node.val]}"'
    left, right = node.left, node.right
    if type(right).__name__ == "Not":
        return f"({_package_text(left, names)} AND NOT {_package_text(right.val, names)})"
    return f"({_package_text(left, names)} {kind.upper()} {_package_text(right, names)})"


@pytest.mark.slow
def test_compexp_run_writes_formulas_and_its_report(tmp_path, shared_cache):
    cfg = compose_config(
        tmp_path, "task=compexp", "task.beam=3", "task.length=2", cache=shared_cache
    )
    summary = train(cfg)
    ce = summary["compexp"]
    with open(tmp_path / "run" / "formulas.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == ce["units"] > 0
    assert {"formula_2", "iou_2", "formula_3", "iou_3"} <= set(rows[0])
    for row in rows:
        assert float(row["iou"]) >= float(row["label_iou"]) - 1e-9
        assert float(row["gain"]) == pytest.approx(
            float(row["iou"]) - float(row["label_iou"]), abs=1e-5
        )
    by_length = list(ce["mean_iou_by_length"].values())
    assert by_length == sorted(by_length) and len(by_length) == 2
    assert ce["share_longer"] == pytest.approx(np.mean([int(r["length"]) > 1 for r in rows]))
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["task"] == "compexp" and saved["compexp"]["beam"] == 3
    report = analyse([], tmp_path / "report", directories=[str(tmp_path / "run")])
    assert (report.out_dir / "compexp_iou_by_length.png").is_file()
    strips = list(report.out_dir.glob("compexp_units_*.png"))
    assert len(strips) == 1 and "compexp_gain" in (report.out_dir / "index.html").read_text()


def test_netdissect_units_get_the_formula_of_the_same_layer(tmp_path):
    config = {"config": {"network": "synthnet", "layer": "conv5"}}
    rows = [{"unit": "0", "formula": "(a OR b)", "iou": "0.5", "gain": "0.1"}]
    explained = CompExpRun(tmp_path, config, rows, np.zeros((1, 1), int))
    same, other = (
        DissectionRun(tmp_path, {"config": {"network": "synthnet", "layer": layer}}, [], None)
        for layer in ("conv5", "conv4")
    )
    attach_formulas([same, other], [explained])
    assert same.extra["formulas"] == {0: ("(a OR b)", 0.5)} and "formulas" not in other.extra


def test_outcome_writes_logs_and_prints(tmp_path):
    data = random_maps(seed=4)
    result = search(data, length=2, beam=3)
    settings = {"length": 2, "beam": 3, "complexity_penalty": None, "first_beam": 6}
    outcome = CompExpOutcome(
        result,
        np.array(data.names),
        data.thresholds,
        np.zeros((8, 2), int),
        np.zeros((8, 2)),
        settings,
    )
    summary = outcome.write(tmp_path, {"network": "n", "layer": "l"}, {"compexp": 1.0}, {})
    logged = {}
    logger = SimpleNamespace(
        log_metrics=logged.update, log_table=lambda key, columns, data: logged.update({key: data})
    )
    outcome.log(logger, summary)
    assert (
        logged["compexp/mean_iou"] == summary["compexp"]["mean_iou"]
        and len(logged["formulas"]) == 8
    )
    assert "compexp n l: 8 units, length ≤ 2, beam 3" in outcome.terminal(summary)
    with open(tmp_path / "formulas.csv") as handle:
        rows = list(csv.DictReader(handle))
    for unit, row in enumerate(rows):
        assert brute_iou(data, row["formula"], unit) == pytest.approx(float(row["iou"]), abs=1e-6)
        label_iou = brute_iou(data, f'"{row["label"]}"', unit)
        assert label_iou == pytest.approx(float(row["label_iou"]), abs=1e-6)
    with h5py.File(tmp_path / "compexp.h5") as h5:
        assert h5["label_iou"].shape == (8, len(data.names)) and h5["best_by_length"].shape == (
            8,
            2,
        )
