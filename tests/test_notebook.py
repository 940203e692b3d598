"""demo.ipynb runs top to bottom: the checked-out repository, downloads from a loopback server, exact WER/CER.

The notebook's download cells read their addresses from ASR_DEMO_* variables when its form fields are empty;
here they point at a loopback server holding a checkpoint trained in this test, a tiny ARPA LM and a zip of
the LibriSpeech fixtures in CustomDir layout. The table the notebook prints must equal what inference.py
computes on the same inputs.
"""

import hashlib
import io
import json
import zipfile
from pathlib import Path

import nbformat
import pytest
from loopback import LoopbackServer

import inference
import train
from asr.lm import build_arpa

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "demo.ipynb"


def _zip_of(folder: Path) -> bytes:
    """folder/{audio,transcriptions}/* as mine/... in a zip (Drive zips usually hold a top folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.parent.name in ("audio", "transcriptions"):
                z.write(path, f"mine/{path.relative_to(folder)}")
    return buffer.getvalue()


def test_notebook_has_no_outputs_and_a_drive_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert any('DRIVE_LINK = ""  # @param' in c.source for c in code)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, librispeech_fixtures, monkeypatch):
    from nbclient import NotebookClient

    run = train.main(["--dataset", str(librispeech_fixtures), "--runs_dir", str(tmp_path / "runs"), "--model", "tiny",
                      "--epochs", "1", "--max_steps", "2", "--no-tensorboard"])  # fmt: skip
    checkpoint = (run["run_dir"] / "best.pt").read_bytes()
    sentences = [p.read_text().strip() for p in sorted((librispeech_fixtures / "transcriptions").glob("*.txt"))]
    arpa = build_arpa(sentences, order=2)
    (tmp_path / "lm.arpa").write_text(arpa)
    server = LoopbackServer()
    server.state.files |= {
        "/best.pt": checkpoint,
        "/lm.arpa": arpa.encode(),
        "/mine.zip": _zip_of(librispeech_fixtures),
    }
    work = tmp_path / "work"
    monkeypatch.setenv("ASR_DEMO_REPO", str(REPO))
    monkeypatch.setenv("ASR_DEMO_WORK", str(work))
    monkeypatch.setenv("ASR_DEMO_SKIP_INSTALL", "1")
    monkeypatch.setenv("ASR_DEMO_CHECKPOINT_URL", server.url("/best.pt"))
    monkeypatch.setenv("ASR_DEMO_CHECKPOINT_SHA256", hashlib.sha256(checkpoint).hexdigest())
    monkeypatch.setenv("ASR_DEMO_LM_URL", server.url("/lm.arpa"))
    monkeypatch.setenv("ASR_DEMO_DATASET_URL", server.url("/mine.zip"))
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        server.close()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)

    # The same numbers, computed here by inference.py on the same checkpoint, data and LM.
    (tmp_path / "best.pt").write_bytes(checkpoint)
    lm = str(tmp_path / "lm.arpa")
    decoders = {"greedy": [], "beam": ["--decoder", "beam", "--beam_size", "32"],
                "beam + LM": ["--decoder", "beam_lm", "--beam_size", "32", "--lm", lm]}  # fmt: skip
    expected = {}
    for name, flags in decoders.items():
        out = tmp_path / "expected" / name
        args = ["--data_dir", str(librispeech_fixtures), "--out", str(out), "--checkpoint", str(tmp_path / "best.pt")]
        assert inference.main([*args, *flags]) == 0
        expected[name] = json.loads((out / "metrics.json").read_text())
    assert "14 utterances, 306 reference words (corpus-level rates)" in printed
    for name, m in expected.items():
        assert f"{name:<10} {100 * m['wer']:>7.2f} {100 * m['cer']:>7.2f}" in printed, name
    assert "checkpoint -> " in printed and "(SHA-256 verified)" in printed
    assert "references " in printed and "data/example/transcriptions/ vs predictions " in printed
    assert (work / "preds" / "mine" / "beam_lm").is_dir() and len(list((work / "data" / "mine").rglob("*.flac"))) > 0
