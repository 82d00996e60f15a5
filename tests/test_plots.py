"""`gstbench plot` renders every figure type from small stored result sets, as valid image files."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from conftest import DATA, run_cli
from gstbench.plugins import Registry
from gstbench.run.runner import RunOptions, run_suite
from gstbench.plan.suite import load_suite

FIGURES = {"stability_vs_generalization", "test_accuracy_over_training", "rate_sweep", "prune_potential", "stability_vs_ood_acc_mean",
           "lmc_curves", "accuracy_vs_remaining"}  # the methods figures: tests/test_methods_suite.py


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Stored results of three tiny suites: two rates, prune-retrain with shifts, rounds with two data orders."""
    registry = Registry()
    root = tmp_path_factory.mktemp("plots")
    dirs = {}
    for name in ("tiny_rates", "tiny_ood", "tiny_rounds"):
        summary = run_suite(load_suite(registry, str(DATA / f"{name}.toml")), root / name, registry,
                            RunOptions(executor="sequential"))
        assert summary.failed == 0
        dirs[name] = root / name
    return dirs


def _written(proc) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    return {line.rsplit("/", 1)[-1].split(".")[0]: line for line in proc.stdout.split()}


def test_every_figure_type_renders_as_a_valid_png(results, tmp_path):
    from matplotlib import image

    made: dict[str, str] = {}
    for name, directory in results.items():
        proc = run_cli("plot", str(directory), "--out", str(tmp_path / name))
        made.update(_written(proc))
    assert set(made) == FIGURES
    for path in made.values():
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        pixels = image.imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500 and pixels.std() > 0  # drawn, not blank


def test_svg_and_pdf_and_the_skipped_figures_are_said(results, tmp_path):
    proc = run_cli("plot", str(results["tiny_rates"]), "--out", str(tmp_path / "svg"), "--format", "svg")
    written = _written(proc)
    assert set(written) == {"stability_vs_generalization", "test_accuracy_over_training", "rate_sweep"}
    root = ET.parse(written["rate_sweep"]).getroot()
    assert root.tag.endswith("svg")
    assert "skipped prune_potential: no prune-retrain rounds with shifted test sets" in proc.stderr
    proc = run_cli("plot", str(results["tiny_ood"]), "--out", str(tmp_path / "pdf"), "--format", "pdf")
    with open(_written(proc)["prune_potential"], "rb") as fh:
        assert fh.read(5) == b"%PDF-"


def test_ticks_read_as_people_write_them(results):
    from gstbench.reports.figure_style import tick_label
    from gstbench.reports.plots import figures
    from gstbench.reports.report import report_of
    from gstbench.store.reader import load_results

    assert [tick_label(v) for v in (2.64706, 12.8571, 32.768, 100.0, 2.0, 0.5, 0.123)] == \
        ["2.6", "13", "33", "100", "2", "0.5", "0.12"]
    loaded = load_results(results["tiny_rates"])
    figure = next(fig for name, fig, _ in figures(loaded, report_of(loaded)) if name == "rate_sweep")
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels and all(label.endswith("%") and len(label) <= 4 for label in labels), labels


@pytest.mark.parametrize("entries", [5, 89])
def test_a_short_legend_sits_in_the_axes_and_a_long_one_beside_them_inside_the_figure(entries):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gstbench.reports.figure_style import LEGEND_INSIDE, legend as _legend

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for i in range(entries):
        ax.scatter([i], [i], label=f"synflow smallest mask 1 round 0.{i} l1-bn-gamma")
    _legend(ax)
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    figure = fig.bbox
    assert figure.x0 <= legend.x0 and legend.x1 <= figure.x1 + 1  # wholly inside the figure (1 px of rounding)
    assert figure.y0 <= legend.y0 and legend.y1 <= figure.y1 + 1
    if entries <= LEGEND_INSIDE:
        assert axes.x0 <= legend.x0 and legend.x1 <= axes.x1  # inside the axes
    else:
        assert legend.x0 >= axes.x1  # beside the axes: it covers no data
        assert axes.width > 0.4 * 7 * fig.dpi  # the axes kept their room: the figure was widened for the legend
    plt.close(fig)


def test_a_log_axis_over_decades_labels_no_minor_tick_and_one_within_two_labels_a_few():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gstbench.reports.figure_style import log_x

    # 0.07-1 ms: a decade and a bit, where the majors alone left one label (0.1) on the axis
    for (low, high), expect_minor in (((3e3, 3e6), False), ((4000, 9000), True), ((0.07, 1.0), True)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot([low, high], [0, 1])
        log_x(ax)
        fig.canvas.draw()
        minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
        assert bool(minor) == expect_minor, (low, high, minor)
        # no two labels share a place: every label drawn sits apart from the next one
        shown = sorted((t.get_window_extent().x0, t.get_window_extent().x1) for t in
                       [*ax.get_xticklabels(), *ax.get_xticklabels(minor=True)] if t.get_text())
        assert all(a[1] <= b[0] for a, b in zip(shown, shown[1:])), (low, high, shown)
        plt.close(fig)


def test_the_pareto_front_is_the_upper_left_staircase_of_the_non_dominated_points():
    from gstbench.reports.method_figures import pareto_front

    points = [(10, 80.0), (10, 70.0), (20, 79.0), (30, 85.0), (40, 84.0), (50, 90.0), (5, 60.0), (60, 90.0)]
    assert pareto_front(points) == [(5, 60.0), (10, 80.0), (30, 85.0), (50, 90.0)]


def test_22_methods_each_keep_a_look_of_their_own_families_by_colour():
    from gstbench.reports.figure_style import method_styles

    scorers = ["l1", "l2", "bn-gamma", "activation-l1", "snip", "grasp", "synflow", "random", "hrank", "taylor"]
    methods = [f"{s} {regime}" for s in scorers for regime in ("1 round", "1ep")] + ["l1 1 round reinit",
                                                                                     "bn-gamma soft 1ep"]
    styles = method_styles(methods)
    looks = {(st["color"], st["marker"], st["linestyle"]) for st in styles.values()}
    assert len(looks) == len(methods) == 22
    assert styles["l1 1 round"]["color"] == styles["l1 1ep"]["color"] != styles["l2 1ep"]["color"]
    assert styles["l1 1 round"]["marker"] == styles["l2 1 round"]["marker"] != styles["l1 1ep"]["marker"]
