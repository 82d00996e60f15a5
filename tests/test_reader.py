"""The one results reader: a run directory read once, its cells grouped by configuration key, whatever they print as."""

from __future__ import annotations

from conftest import DATA
from gstbench.plan.config import config_key
from gstbench.plugins import Registry
from gstbench.reports.plots import _groups
from gstbench.store.reader import load_results
from gstbench.reports.report import build_report
from gstbench.run.runner import RunOptions, run_suite
from gstbench.plan.suite import load_suite


def test_configurations_that_print_alike_stay_apart_everywhere(tmp_path):
    registry = Registry()
    suite = load_suite(registry, str(DATA / "tiny_same_label.toml"))
    assert run_suite(suite, tmp_path / "run", registry, RunOptions(executor="sequential")).failed == 0
    results = load_results(tmp_path / "run")
    # the key is the one the suite computed before the run, for every reader
    assert sorted(c.key for c in results.configurations) == sorted({cell.config_hash for cell in suite.cells})
    assert all(c.key == config_key(c.spec.canonical()) == c.spec.config_hash and [x.status for x in c.cells] == ["ok"]
               for c in results.configurations)
    assert len(build_report(tmp_path / "run").rows) == 2
    groups = _groups(results)
    # the same label but for the key that tells them apart, which the label then shows
    assert sorted(groups) == ["unpruned lr=0.001", "unpruned lr=0.002"], sorted(groups)
