"""Stratified samples: every class in proportion, rare classes never sampled away, the same rows for a seed."""

from __future__ import annotations

import numpy as np

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


def test_everything_when_it_fits_and_a_cap_below_the_floors_is_raised_to_them() -> None:
    labels = np.arange(10) % 3
    assert stratified_rows(labels, None, 0).tolist() == list(range(10))
    assert stratified_rows(labels, 10, 0).tolist() == list(range(10))
    many = np.repeat(np.arange(30), 5)  # 30 classes, a cap of 20: every class keeps its floor of 2
    rows = stratified_rows(many, 20, 0, at_least=2)
    assert len(rows) == 60 and np.bincount(many[rows]).tolist() == [2] * 30


def test_rounding_goes_to_the_classes_furthest_below_their_share() -> None:
    labels = np.repeat(np.arange(3), [18, 991, 991])  # shares 0.9 / 49.55 / 49.55 of 100; the floor lifts the first
    assert np.bincount(labels[stratified_rows(labels, 100, 0)]).tolist() == [1, 50, 49]
