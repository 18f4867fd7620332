"""Stratified samples: every class in proportion, rare classes never sampled away, the same rows for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.library.data.sampling import stratified_rows


def test_classes_keep_their_share_and_a_seed_its_rows() -> None:
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])
    rows = stratified_rows(labels, 100, seed=3)
    assert len(rows) == 100 and (np.diff(rows) > 0).all()
    assert np.bincount(labels[rows]).tolist() == [50, 30, 15, 5]
    assert (stratified_rows(labels, 100, seed=3) == rows).all()
    assert not (stratified_rows(labels, 100, seed=4) == rows).all()


def test_a_rare_class_is_never_sampled_away() -> None:
    labels = np.array([0] * 997 + [1] * 2 + [2])  # proportionally class 2 would get 0.1 of a row
    one = stratified_rows(labels, 100, seed=0)
    assert np.bincount(labels[one]).tolist() == [98, 1, 1]
    five = stratified_rows(labels, 100, seed=0, at_least=5)  # a class with fewer rows than the floor: all of them
    assert np.bincount(labels[five]).tolist() == [97, 2, 1]


def test_everything_when_it_fits_and_an_impossible_floor_is_refused() -> None:
    labels = np.arange(10) % 3
    assert stratified_rows(labels, None, 0).tolist() == list(range(10))
    assert stratified_rows(labels, 10, 0).tolist() == list(range(10))
    with pytest.raises(ValueError, match="3 classes need 6 rows"):
        stratified_rows(np.repeat(np.arange(3), 5), 5, 0, at_least=2)
