"""report.md and report.png: the compared models and the candidate's learning curve (figures drawn, not trained)."""

import pytest

from tasks.evaluation import report
from tasks.training import train
from tasks.tuning import results

FIGURES = {"accuracy": 0.81, "f1": 0.86, "latency_ms_b1_p50": 4.2, "latency_ms_b1_p99": 6.0, "throughput_b32": 310.0}
EVALUATION = FIGURES | {
    "precision": "int8",
    "decision": "promote",
    "reasons": ["min_accuracy: pass: accuracy 0.8100 is at least 0.7000"],
    "model": "/runs/quantized",
    "split": "validation",
    "pairs": 408,
    "champion": FIGURES | {"accuracy": 0.8},
}
QUANTIZATION = {"fp32": FIGURES | {"accuracy": 0.82}}
HISTORY = [
    {"epoch": 1, "loss": 0.64, "val_loss": 0.58, "accuracy": 0.71, "f1": 0.80},
    {"epoch": 2, "loss": 0.45, "val_loss": 0.49, "accuracy": 0.79, "f1": 0.85},
    {"epoch": 3, "loss": 0.31, "val_loss": 0.47, "accuracy": 0.81, "f1": 0.86},
]


def drawn(history):
    import matplotlib.pyplot as plt

    figure = report.draw(report.compared_models(EVALUATION, QUANTIZATION), history)
    yield figure
    plt.close(figure)


@pytest.fixture
def with_history():
    yield from drawn(HISTORY)


@pytest.fixture
def without_history():
    yield from drawn([])


def test_the_figure_draws_the_candidates_learning_curve_beside_the_bars(with_history):
    titles = [axis.get_title() for axis in with_history.axes]
    assert titles[:3] == [
        "accuracy (higher is better)",
        "latency at batch 1, p50 ms (lower is better)",
        "learning curve of the candidate's training",
    ]
    losses, scores = with_history.axes[2], with_history.axes[3]  # the curve's axes and its 0-1 twin
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in losses.lines}
    assert curves == {
        "training loss": ([1, 2, 3], [0.64, 0.45, 0.31]),
        "validation loss": ([1, 2, 3], [0.58, 0.49, 0.47]),
    }
    curves = {line.get_label(): list(line.get_ydata()) for line in scores.lines}
    assert curves == {"validation accuracy": [0.71, 0.79, 0.81], "validation F1": [0.80, 0.85, 0.86]}
    assert scores.get_ylim() == (0, 1.05)
    legend = [text.get_text() for text in losses.get_legend().get_texts()]
    assert legend == ["training loss", "validation loss", "validation accuracy", "validation F1"]


def test_without_a_history_the_curve_panel_says_so(without_history):
    panel = without_history.axes[2]
    assert panel.get_title() == "learning curve of the candidate's training" and not panel.lines
    assert [text.get_text() for text in panel.texts] == [report.NO_HISTORY]
    assert len(without_history.axes) == 3  # no twin scale for an empty panel


@pytest.mark.parametrize("history", [HISTORY, None], ids=["history", "none"])
def test_the_report_lists_the_curve_per_epoch_or_says_there_is_none(tmp_path, history):
    report.write_report(tmp_path, EVALUATION, QUANTIZATION, history)
    text = (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| FP32 before compression |" in text and "The FP32 row was measured by the quantize step" in text
    curve = text.split("## Learning curve\n\n")[1].split("\n\n")[0]
    if history:
        assert curve.splitlines()[0] == (
            "| epoch | training loss | validation loss | validation accuracy | validation F1 |"
        )
        assert curve.splitlines()[-1] == "| 3 | 0.3100 | 0.4700 | 0.8100 | 0.8600 |"
    else:
        assert curve == report.NO_HISTORY


def tuned_trial(name, learning_rate, accuracy, stopped_early=False, epochs_run=3):
    """A planned trial and its metrics.json as train --score-only writes it (None: the trial wrote none)."""
    setting = {"learning_rate": learning_rate, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01}
    metrics = (
        None
        if accuracy is None
        else {"accuracy": accuracy, "f1": accuracy + 0.05, "epochs_run": epochs_run, "stopped_early": stopped_early}
    )
    return results.outcome({"name": name, "setting": setting}, metrics)


# What the candidate's card keeps of a search (train.card_tuning), from select's own summary of it.
TUNING = train.card_tuning(
    "/runs/tuning/tuning.json",
    results.summarise(
        {"objective": "validation accuracy", "seed": 7, "space": {}, "max_steps": 0, "early_stopping": "auto"},
        [
            tuned_trial("trial-000", 2e-5, 0.70),
            tuned_trial("trial-001", 1e-4, 0.81),
            tuned_trial("trial-002", 3e-4, 0.64, stopped_early=True, epochs_run=1),
            tuned_trial("trial-003", 5e-5, None),
        ],
    ),
)


def test_a_tuned_candidate_gets_a_panel_of_accuracy_by_learning_rate():
    import matplotlib.pyplot as plt
    import numpy as np

    figure = report.draw(report.compared_models(EVALUATION, QUANTIZATION), HISTORY, TUNING)
    try:
        panel = next(axis for axis in figure.axes if axis.get_title() == report.TUNING_TITLE)
        assert panel.get_xscale() == "log" and panel.get_xlabel() == "learning rate"
        points = {collection.get_label(): collection for collection in panel.collections}
        assert set(points) == {"trial", "trial stopped early", "best: trial-001 (0.810)"}
        assert points["trial"].get_offsets().tolist() == [[2e-5, 0.70], [1e-4, 0.81]]
        assert points["trial stopped early"].get_offsets().tolist() == [[3e-4, 0.64]]
        assert np.all(points["trial"].get_facecolors()[:, 3] == 1)  # filled
        assert points["trial stopped early"].get_facecolors().size == 0  # hollow
        assert points["best: trial-001 (0.810)"].get_offsets().tolist() == [[1e-4, 0.81]]
        assert [text.get_text() for text in panel.texts] == ["1 failed trial(s) not shown"]
    finally:
        plt.close(figure)


def test_the_report_lists_the_search_that_chose_the_setting(tmp_path):
    report.write_report(tmp_path, EVALUATION, QUANTIZATION, HISTORY, TUNING)
    text = (tmp_path / "report.md").read_text()
    table = text.split("## Tuning\n\n")[1].split("\n\n![chart]")[0].splitlines()
    assert table[0] == (
        "The validation accuracy of each trial of the search /runs/tuning/tuning.json; the candidate was trained with"
        " the best setting."
    )
    assert table[2] == (
        "| trial | learning rate | epochs | batch size | warm-up | weight decay | accuracy | F1 | status |"
    )
    assert table[5] == "| **trial-001** (best) | 0.0001 | 3 | 16 | 0.1 | 0.01 | 0.8100 | 0.8600 | completed |"
    assert table[6] == "| trial-002 | 0.0003 | 3 | 16 | 0.1 | 0.01 | 0.6400 | 0.6900 | stopped after epoch 1 |"
    assert table[7] == "| trial-003 | 5e-05 | 3 | 16 | 0.1 | 0.01 |  |  | failed |"
    report.write_report(tmp_path, EVALUATION, QUANTIZATION, HISTORY)
    assert "## Tuning" not in (tmp_path / "report.md").read_text()
