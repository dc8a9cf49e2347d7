"""`make bench` is not run by CI; at least every benchmark module must import."""

import importlib

import pytest

from bench.run import BENCHMARKS


@pytest.mark.parametrize("module", sorted(BENCHMARKS.values()))
def test_benchmark_module_imports_and_has_run(module: str) -> None:
    assert callable(importlib.import_module(module).run)
