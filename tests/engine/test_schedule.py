"""The learning-rate schedule (mae.engine.schedule): linear warm-up, then a half cosine down to min_lr."""

from argparse import Namespace

import pytest

from mae.engine import schedule


def test_learning_rate_schedule():
    args = Namespace(lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=10)
    assert schedule.learning_rate(0, args) == 0
    assert schedule.learning_rate(1, args) == pytest.approx(0.5)  # linear warm-up
    assert schedule.learning_rate(2, args) == pytest.approx(1.0)
    assert schedule.learning_rate(6, args) == pytest.approx(0.55)  # half-way down the cosine
    assert schedule.learning_rate(10, args) == pytest.approx(0.1)
