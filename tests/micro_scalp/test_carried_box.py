"""``CarriedBox``: the last bars' box carried from bar to bar gives the slice's max/min every time,
including the steps where it must not carry (the bar that left held the extreme, a gap of bars,
a window shorter than the box, another box size)."""
from __future__ import annotations

import random

from engines.micro_scalp_checkers import CarriedBox


def slice_box(high: list[float], low: list[float], end: int, count: int) -> tuple[float, float]:
    first = end - count if end > count else 0
    return max(high[first:end]), min(low[first:end])


def test_carried_box_equals_the_slice_on_every_step():
    rng = random.Random(7)
    high, low = [], []
    for _ in range(400):  # coarse prices: ties between the leaving bar and the extreme are common
        mid = 100 + rng.randint(-6, 6) * 0.25
        high.append(mid + rng.randint(0, 3) * 0.25)
        low.append(mid - rng.randint(0, 3) * 0.25)
    box = CarriedBox()
    end, carried = 1, 0
    while end <= len(high):
        expected = slice_box(high, low, end, 20)
        carried += end == box.end + 1 and end > 20
        assert box.at(high, low, end, 20) == expected
        assert box.at(high, low, end, 20) == expected  # the same bar again
        end += 1 if rng.random() < 0.8 else rng.randint(2, 4)  # and gaps of bars
    assert carried > 200


def test_leaving_bar_that_held_the_extreme_is_recomputed():
    high = [110.0, 101.0, 102.0, 103.0, 101.5]
    low = [90.0, 99.0, 98.0, 97.0, 98.5]
    box = CarriedBox()
    assert box.at(high, low, 4, 3) == (103.0, 97.0)
    box2 = CarriedBox()
    assert box2.at(high, low, 3, 3) == (110.0, 90.0)
    assert box2.at(high, low, 4, 3) == (103.0, 97.0)   # bar 0 (both extremes) left
    assert box2.at(high, low, 5, 3) == (103.0, 97.0)
    assert box2.at(high, low, 5, 2) == (103.0, 97.0)   # another count: taken afresh
    assert box2.at(high, low, 4, 2) == (103.0, 97.0)   # an earlier end: taken afresh
    assert box2.at(high, low, 3, 2) == (102.0, 98.0)
