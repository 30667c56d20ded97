import pytest

from tasks.training.train import schedule


@pytest.mark.parametrize(
    ("pairs", "batch", "epochs", "max_steps", "expected"),
    [
        (2000, 32, 3, 0, (3, 63)),  # a partial last batch still counts as a step
        (2000, 64, 3, 0, (3, 32)),  # two workers of 32 halve the steps
        (2000, 32, 3, 40, (1, 40)),  # fewer steps than one epoch
        (2000, 32, 3, 100, (1, 100)),  # more steps than one epoch: exactly 100, not two whole epochs
    ],
)
def test_schedule(pairs, batch, epochs, max_steps, expected):
    assert schedule(pairs, batch, epochs, max_steps) == expected
