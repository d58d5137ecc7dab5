"""Dataset sources: a mistyped data.root or a synthetic set of other parameters is one line."""

from __future__ import annotations

import pytest

from net2vec.data.broden import DatasetError
from net2vec.data.sources import SyntheticSource


def test_a_synthetic_set_of_other_parameters_names_the_settings_that_fit(tmp_path):
    root = SyntheticSource(tmp_path / "synthetic-40-64-0", images=40, size=64).prepare()
    with pytest.raises(DatasetError, match="set data.images=40 to use it") as error:
        SyntheticSource(root, images=80, size=64).prepare()
    assert "\n" not in str(error.value) and "data.size" not in str(error.value)


def test_a_mistyped_root_is_an_error_not_a_new_set(tmp_path):
    typo = tmp_path / "synthtic-40-64-0"
    with pytest.raises(DatasetError, match="no dataset there.*data.generate=always"):
        SyntheticSource(typo, images=40, size=64).prepare()
    assert not typo.exists()
    assert (
        SyntheticSource(typo, images=40, size=64, generate="always").prepare() / "index.csv"
    ).is_file()
    assert SyntheticSource(typo, images=40, size=64).prepare() == typo  # an existing set is used
