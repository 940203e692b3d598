"""pyproject.toml makes the repository an installable package (`pip install -e .`); benchmarks import it as
they are run, `python -m benchmarks.<name>` from the repository root, without touching sys.path."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_installs_the_asr_package_with_requirements_txt():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["name"] and project["version"] and project["requires-python"] == ">=3.10"
    assert project["dynamic"] == ["dependencies"]
    setuptools = pyproject["tool"]["setuptools"]
    assert setuptools["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert setuptools["packages"] == ["asr"] and "resources.json" in setuptools["package-data"]["asr"]


def test_no_benchmark_patches_sys_path():
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        assert "sys.path.insert" not in path.read_text(), f"{path.name}: run it as python -m benchmarks.{path.stem}"
