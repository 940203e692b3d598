"""benchmarks/plot_curves.py: TensorBoard scalars in, a PNG out."""

import pytest
from torch.utils.tensorboard import SummaryWriter

from benchmarks import plot_curves


def _run(folder, losses):
    writer = SummaryWriter(folder / "tensorboard")
    for step, loss in enumerate(losses):
        writer.add_scalar("train/loss", loss, step)
    writer.add_scalar("val/wer", 0.5, len(losses))
    writer.close()
    return folder


def test_reads_every_point_and_writes_a_png(tmp_path):
    a = _run(tmp_path / "a", [float(300 - i) for i in range(300)])  # more points than TensorBoard keeps by default
    b = _run(tmp_path / "b", [3.0, 2.0, 1.0])
    assert plot_curves.read_scalars(b, ["train/loss", "val/wer", "train/lr"]) == {
        "train/loss": ([0, 1, 2], [3.0, 2.0, 1.0]),
        "val/wer": ([3], [0.5]),
    }
    assert len(plot_curves.read_scalars(a, ["train/loss"])["train/loss"][0]) == 300

    out = tmp_path / "docs" / "curves.png"
    plot_curves.main([str(a), str(b), "--tags", "train/loss", "val/wer", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_logs_and_tags_are_errors_that_name_them(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        plot_curves.read_scalars(tmp_path, ["train/loss"])
    run = _run(tmp_path / "r", [1.0])
    with pytest.raises(SystemExit):
        plot_curves.main([str(run), "--tags", "val/cer", "--out", str(tmp_path / "x.png")])
    assert "no run logged val/cer" in capsys.readouterr().err
