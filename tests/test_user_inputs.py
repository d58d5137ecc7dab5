"""Users' own BRODEN-format files and run folders: paths confined to the dataset root, doubled
header columns, empty or NUL-holding index.csv, missing/failed/truncated runs, each one line."""

from __future__ import annotations

import logging
import os

import pytest
from test_broden import HEADER, tiny, write_csv  # noqa: F401 (tiny: the two-image fixture)

from net2vec.analysis.runs import RunError, find_run_dirs, load_run
from net2vec.data.broden import BrodenDataset, DatasetError
from net2vec.data.fingerprint import dataset_fingerprint

ROW = ["sub/a.jpg", "train", 8, 8, 4, 4, "sub/a_color.png", "", "", "", "", ""]


def index_with(root, *rows, header=HEADER):
    write_csv(root / "index.csv", header, [list(row) for row in rows])


@pytest.mark.parametrize(
    "column, name",
    [
        (0, "../../other/images/x.jpg"),
        (0, "/etc/hostname"),
        (6, "sub/a_color.png;../../../x.png"),
        (8, "../../outside_part.png"),
    ],
)
def test_index_paths_outside_the_root_are_refused(tiny, column, name):  # noqa: F811
    row = list(ROW)
    row[column] = name
    index_with(tiny, ROW, row)
    for read in (BrodenDataset, dataset_fingerprint):  # the store's key reads no file outside
        with pytest.raises(DatasetError, match="row 3: .* lies outside the dataset root") as error:
            read(tiny)
        assert "\n" not in str(error.value) and repr(name.split(";")[-1]) in str(error.value)


def test_paths_that_stay_inside_the_root_are_read(tiny):  # noqa: F811
    row = list(ROW)
    row[0] = "sub/../sub/a.jpg"
    index_with(tiny, row)
    assert BrodenDataset(tiny).load_image(0).size == (8, 8)


@pytest.mark.parametrize(
    "header, fragment",
    [
        (HEADER + ["object"], "column 'object' appears twice"),
        (["split", *HEADER], "column 'split' appears twice"),
    ],
)
def test_a_doubled_header_column_is_refused(tiny, header, fragment):  # noqa: F811
    index_with(tiny, ROW + [""] * (len(header) - len(HEADER)), header=header)
    with pytest.raises(DatasetError, match=fragment):
        BrodenDataset(tiny)


def test_a_header_only_index_says_so(tiny):  # noqa: F811
    index_with(tiny)
    with pytest.raises(DatasetError, match="index.csv: no image rows, only a header"):
        BrodenDataset(tiny)


def test_a_nul_byte_names_the_file_and_line(tiny):  # noqa: F811
    index_with(tiny, ROW, ["sub/b\0.jpg", *ROW[1:]])
    for read in (BrodenDataset, dataset_fingerprint):
        with pytest.raises(DatasetError, match=r"index.csv line 3: holds a NUL byte"):
            read(tiny)


# --- run folders read by evaluate.py ---------------------------------------------------------

RESULTS = "concept,category,single_iou_val,iou_val\nsky,object,0.2,0.3\ngrass,object,0.1,0.4\n"


def run_folder(path, results=RESULTS):
    path.mkdir(parents=True)
    (path / "results.csv").write_text(results)
    return path


def test_a_missing_run_folder_is_named(tmp_path):
    run_folder(tmp_path / "good")
    assert load_run(tmp_path / "good").all.tolist() == [0.3, 0.4]
    with pytest.raises(RunError, match="missing: no such run directory"):
        load_run(tmp_path / "missing")


@pytest.mark.parametrize("cut", [-3, -9, 40])
def test_a_truncated_results_csv_is_detected(tmp_path, cut):
    run_folder(tmp_path / "run", RESULTS[:cut])
    with pytest.raises(RunError, match="truncated"):
        load_run(tmp_path / "run")


def test_embeddings_of_random_bytes_are_one_line(tmp_path):
    run = run_folder(tmp_path / "run")
    (run / "embeddings.h5").write_bytes(os.urandom(4096))
    with pytest.raises(RunError, match="embeddings.h5: not a readable HDF5 file") as error:
        load_run(run)
    assert "\n" not in str(error.value)


def test_failed_jobs_of_a_sweep_are_mentioned(tmp_path, caplog):
    sweep = tmp_path / "sweep"
    for job in ("0-a", "2-c"):
        run_folder(sweep / job)
    (sweep / "1-b" / ".hydra").mkdir(parents=True)  # a job that failed before writing results
    with caplog.at_level(logging.WARNING):
        found = find_run_dirs(sweep)
    assert [p.name for p in found] == ["0-a", "2-c"]
    assert "1 of its jobs left no results" in caplog.text and "1-b" in caplog.text


def test_a_results_csv_cut_at_a_line_end_disagrees_with_its_summary(tmp_path):
    run = run_folder(tmp_path / "run", RESULTS.rsplit("grass", 1)[0])
    (run / "summary.json").write_text('{"counts": {"concepts": 2}}')
    with pytest.raises(RunError, match="1 concept rows, summary.json records 2"):
        load_run(run)
