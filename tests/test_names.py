"""Names are names, every write stays in its directory, and a matrix too large to build is refused unbuilt.

Suite names pick result directories and reach trackers' folders; a name like ``../x`` is refused
where it is read, before anything is trained or written. Each writer checks that what it writes
lies inside the directory it was given (symbolic links followed).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from conftest import DATA, run_cli
from gstbench.errors import GstbenchError, SpecError
from gstbench.names import NAME_MAX, inside, name_problem
from gstbench.plan.suite import load_suite
from gstbench.testing import files_outside

TINY = (DATA / "tiny.toml").read_text()


@pytest.mark.parametrize("name", ["tradeoff", "my.suite-2_x", "A", "9lives", "x" * NAME_MAX])
def test_a_name_is_letters_digits_dash_underscore_and_dot(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", ".hidden", "a b", "", "x" * (NAME_MAX + 1), "é",
                                  "a\\b", "a:b", "~", 3, None])
def test_anything_else_is_not_a_name(name):
    assert name_problem(name)


def suite_file(tmp_path: Path, name: str | None, filename: str = "suite.toml") -> Path:
    text = TINY.replace('name = "tiny"\n', "" if name is None else f'name = "{name}"\n')
    path = tmp_path / filename
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["../../escaped-suite", "/tmp/absolute", "a/b", ".hidden", "x" * 101])
def test_a_suite_name_that_is_not_a_name_is_refused_naming_file_and_key(registry, tmp_path, name):
    path = suite_file(tmp_path, name)
    with pytest.raises(SpecError) as caught:
        load_suite(registry, str(path))
    assert caught.value.key == "name" and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_suite_named_like_a_path_writes_nothing_anywhere(tmp_path):
    """The reported escape: name = "../../escaped-suite" run from a working directory."""
    work = tmp_path / "home" / "project"
    work.mkdir(parents=True)
    path = suite_file(tmp_path, "../../escaped-suite")
    for command in (["run", "--suite", str(path), "--seeds", "1"], ["suites", "show", str(path)]):
        proc = run_cli(*command, cwd=work)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr and "key 'name'" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert files_outside(tmp_path, path) == []  # not even an empty gstbench-results/


def test_a_file_name_that_is_not_a_name_needs_a_name_key(registry, tmp_path):
    path = suite_file(tmp_path, None, "my suite.toml")
    with pytest.raises(SpecError, match="set name ="):
        load_suite(registry, str(path))
    fixed = suite_file(tmp_path, "my-suite", "my suite.toml")
    assert load_suite(registry, str(fixed)).name == "my-suite"


def test_inside_follows_dots_and_links(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    assert inside(root, root / "sub" / "file.txt", "--out") == root / "sub" / "file.txt"
    assert inside(root, root, "--out") == root
    with pytest.raises(GstbenchError, match=r"outside .*\(--out\)"):
        inside(root, root / ".." / "outside" / "x", "--out")
    (root / "link").symlink_to(outside)
    with pytest.raises(GstbenchError, match="lies outside"):
        inside(root, root / "link" / "x", "--out")
    with pytest.raises(GstbenchError):
        inside(root, tmp_path / "rootx" / "y", "--out")  # a sibling sharing the prefix is not inside


def test_every_writer_of_a_run_writes_only_where_it_was_told(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = suite_file(tmp_path, "tiny")
    steps = [["run", "--suite", str(path), "--seeds", "1"],  # the default result directory
             ["plot", "gstbench-results/tiny", "--out", "figures"],
             ["report", "gstbench-results/tiny", "--format", "html", "--output", "page.html"],
             ["compare", "gstbench-results/tiny", "gstbench-results/tiny", "--format", "html", "--output", "cmp.html"],
             ["new-plugin", "mysnip", "--kind", "scorer"]]
    for step in steps:
        proc = run_cli(*step, cwd=work)
        assert proc.returncode == 0, (step, proc.stderr)
    told = [path, work / "gstbench-results" / "tiny", work / "figures", work / "page.html", work / "cmp.html",
            work / "mysnip"]
    assert files_outside(tmp_path, *told) == []
    assert (work / "figures" / "test_accuracy_over_training.png").is_file()


def test_a_link_planted_where_a_figure_goes_is_refused_and_its_target_untouched(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--out", str(out)).returncode == 0
    figures, victim = tmp_path / "figures", tmp_path / "victim.txt"
    figures.mkdir()
    victim.write_text("keep me")
    (figures / "test_accuracy_over_training.png").symlink_to(victim)
    proc = run_cli("plot", str(out), "--out", str(figures))
    assert proc.returncode == 2 and "lies outside" in proc.stderr and "Traceback" not in proc.stderr
    assert victim.read_text() == "keep me"


def big_suite(tmp_path: Path, per_axis: int, seeds: str = "1") -> Path:
    values = ", ".join(f"{0.1 + 0.4 * i / per_axis:.6f}" for i in range(per_axis))
    lrs = ", ".join(f"{1e-3 * (i + 1):.6f}" for i in range(per_axis))
    text = TINY.replace("seeds = 2", f"seeds = {seeds}").replace(
        '"prune.target" = ["smallest", "largest"]',
        f'"prune.target" = ["smallest", "largest"]\n"prune.layers.conv3.fraction" = [{values}]\n"train.lr" = [{lrs}]')
    path = tmp_path / "big.toml"
    path.write_text(text)
    return path


def test_a_matrix_over_the_limit_is_refused_before_it_is_built(registry, tmp_path):
    path = big_suite(tmp_path, 10_000)  # 2 x 10^4 x 10^4 + 1 = 200,000,001 cells
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        load_suite(registry, str(path))
    assert time.perf_counter() - t0 < 5  # nothing was built
    message = str(caught.value)
    assert "200,000,001 cells" in message and "axes 2 x 10,000 x 10,000 + 1 included" in message
    assert "--max-cells" in message and "1,000,000" in message and "\n" not in message


def test_max_cells_lowers_or_raises_the_limit(registry, tmp_path):
    path = big_suite(tmp_path, 3)  # 2 x 3 x 3 + 1 = 19 configurations x 2 seeds
    with pytest.raises(SpecError, match="38 cells"):
        load_suite(registry, str(path), seeds=2, max_cells=37)
    assert len(load_suite(registry, str(path), seeds=2, max_cells=38).cells) == 38
    proc = run_cli("suites", "show", str(path), "--max-cells", "10")
    assert proc.returncode == 2 and "19 cells" in proc.stderr and "more than the limit of 10" in proc.stderr


@pytest.mark.parametrize("seeds", ["99999999999999999999", '"0-99999999999999999999"'])
def test_a_seed_count_too_large_to_list_is_refused_in_one_line(tmp_path, seeds):
    path = tmp_path / "seeds.toml"
    path.write_text(TINY.replace("seeds = 2", f"seeds = {seeds}"))
    proc = run_cli("suites", "show", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "key 'seeds'" in proc.stderr and "cells" in proc.stderr
    flag = run_cli("suites", "show", str(DATA / "tiny.toml"), "--seeds", "99999999999999999999")
    assert flag.returncode == 2 and "Traceback" not in flag.stderr and "seeds" in flag.stderr


def test_a_link_planted_in_the_run_directory_is_refused_and_its_target_untouched(tmp_path):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert run_cli("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--out", str(out)).returncode == 0
    cell = sorted((out / "cells").iterdir())[0]
    shutil.rmtree(cell)
    elsewhere.mkdir()
    cell.symlink_to(elsewhere, target_is_directory=True)
    proc = run_cli("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--out", str(out))
    assert proc.returncode == 2 and "lies outside" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not list(elsewhere.iterdir())
