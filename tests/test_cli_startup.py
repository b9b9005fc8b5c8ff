"""The CLI starts fast: building its parser (``cellnas --help``, ``cellnas zoo``) imports no torch, and the
packages that load their modules on first use still offer every public name."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return set(out.split())


def test_building_the_parser_imports_no_torch():
    loaded = _modules_after("from cellnas.cli import build_parser\nbuild_parser()")
    assert "torch" not in loaded and "matplotlib" not in loaded and "sklearn" not in loaded
    assert "cellnas.train.config" in loaded and "cellnas.search.config" in loaded  # the parser reads both


def test_cellnas_help_and_zoo_run_without_torch():
    loaded = _modules_after("from cellnas.cli import main\nimport contextlib, io\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['zoo'])")  # fmt: skip
    assert "torch" not in loaded


@pytest.mark.parametrize("package", ["cellnas.train", "cellnas.search"])
def test_every_public_name_of_a_lazy_package_resolves(package):
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None
        assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        module.nothing  # noqa: B018


def test_the_packages_are_still_callable_and_import_their_names():
    import cellnas
    from cellnas.search import search
    from cellnas.train import TrainConfig, train

    assert callable(cellnas.search) and callable(cellnas.train) and callable(search) and callable(train)
    assert cellnas.train.train is train and TrainConfig.__name__ == "TrainConfig"


def test_analysis_modules_resolve_from_import_cellnas():
    loaded = _modules_after("import cellnas\nassert callable(cellnas.analysis.topology.topology)")
    assert "cellnas.analysis.topology" in loaded
    import cellnas

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cellnas.analysis.nothing  # noqa: B018
