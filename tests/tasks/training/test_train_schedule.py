import pytest

from tasks.training.train import Schedule


@pytest.mark.parametrize(
    ("pairs", "batch", "epochs", "max_steps", "expected"),
    [
        (2000, 32, 3, 0, (63, 189, 189, 3)),  # a partial last batch still counts as a step
        (2000, 64, 3, 0, (32, 96, 96, 3)),  # two workers of 32 halve the steps
        (2000, 32, 3, 40, (63, 189, 40, 1)),  # fewer steps than one epoch, of the 3-epoch schedule
        (2000, 32, 3, 100, (63, 189, 100, 2)),  # exactly 100 steps: the second epoch cut short
        (2000, 32, 3, 1000, (63, 189, 189, 3)),  # a cap beyond the schedule: the whole schedule
    ],
)
def test_a_capped_run_takes_the_first_steps_of_its_own_schedule(pairs, batch, epochs, max_steps, expected):
    schedule = Schedule.of(pairs, batch, epochs, max_steps)
    assert (schedule.steps_per_epoch, schedule.total_steps, schedule.steps, schedule.epochs_to_run) == expected
