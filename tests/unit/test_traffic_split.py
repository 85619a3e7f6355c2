"""Traffic splits: how a version is chosen for a key, and what a split may say."""

from __future__ import annotations

import pytest

from shared.models.traffic import SplitInvalid, choose, parse_split


def test_a_split_lands_near_its_weights_and_each_key_always_in_one_place() -> None:
    weights = parse_split(["1=90", "2=10"])
    chosen = [choose(weights, f"image:{i}") for i in range(20_000)]
    assert abs(chosen.count("2") / len(chosen) - 0.10) < 0.01
    assert [choose(weights, f"image:{i}") for i in range(500)] == chosen[:500]


def test_moving_weight_moves_only_the_keys_it_must() -> None:
    """Version order is fixed, so growing the canary from 10 to 20 % keeps every key that was on it there."""
    before = {i: choose({"1": 90, "2": 10}, f"k{i}") for i in range(5000)}
    after = {i: choose({"1": 80, "2": 20}, f"k{i}") for i in range(5000)}
    assert all(after[i] == "2" for i, version in before.items() if version == "2")


def test_zero_weights_and_versions_in_numeric_order() -> None:
    assert {choose({"9": 0, "10": 1}, f"k{i}") for i in range(100)} == {"10"}
    assert choose({"2": 1, "10": 1}, "x") in {"2", "10"}


@pytest.mark.parametrize("items", [["1"], ["1=-3"], ["1=0"], ["a b=1"], []])
def test_a_bad_split_is_refused(items: list[str]) -> None:
    with pytest.raises(SplitInvalid):
        parse_split(items)
