"""The TensorBoard curves of a resumed run: what a killed run wrote past its checkpoint is dropped."""

import pytest

from tasks.training.callbacks import TRAIN_RUN, drop_events_after
from tests.tasks.training.test_train import curves


@pytest.fixture
def killed_run(tmp_path):
    """The events of a run killed while writing step 10: the last record cut short."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard" / TRAIN_RUN))
    for step in range(1, 11):
        with writer.as_default(step=step):
            tf.summary.scalar("batch_loss", 1 / step)
    writer.close()
    [events] = (tmp_path / "tensorboard" / TRAIN_RUN).iterdir()
    events.write_bytes(events.read_bytes()[:-7])
    return tmp_path


def test_events_past_the_resumed_checkpoint_are_dropped(killed_run):
    drop_events_after(killed_run / "tensorboard", 6)
    assert [step for step, _ in curves(killed_run, TRAIN_RUN)["batch_loss"]] == [1, 2, 3, 4, 5, 6]


def test_a_run_that_starts_over_drops_the_earlier_curves(killed_run):
    drop_events_after(killed_run / "tensorboard", 0)
    assert not list((killed_run / "tensorboard" / TRAIN_RUN).iterdir())
