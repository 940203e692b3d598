"""benchmarks/gpu_check.py runs end to end on a CPU with the tiny model (the GPU run is the same code)."""

import pytest

from benchmarks import gpu_check


@pytest.mark.slow  # ~10 s alone on 2 cores
def test_the_device_check_prints_one_table_on_a_cpu(capsys):
    rows = gpu_check.main(["--device", "cpu", "--quick"])
    printed = capsys.readouterr().out
    assert printed.splitlines()[1].split() == ["check", "setting", "result", "note"]
    settings = {(check, setting) for check, setting, *_ in rows}
    for precision in ("fp32", "fp16", "bf16"):
        for path in ("split", "fused"):
            assert ("train", f"{precision} {path}") in settings
    assert {"memory", "cudnn", "infer", "fit"} <= {check for check, *_ in rows}
    (fit,) = [r for r in rows if r[0] == "fit"]
    assert fit[3] == "falling", fit
