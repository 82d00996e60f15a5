"""`gstbench new-plugin`: writes a ready-to-install plugin package with one working component and its test."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from gstbench.errors import GstbenchError
from gstbench.names import inside

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "gstbench-$name"
version = "0.1.0"
description = "$description"
requires-python = ">=3.11"
dependencies = ["gstbench"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The entry point's name is the plugin's name: its components are $name:<component>.
[project.entry-points.gstbench]
$name = "$module"

[tool.setuptools]
packages = ["$module"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''')

README = Template('''\
# gstbench-$name

$description

```bash
pip install -e .                  # gstbench now lists it: gstbench plugins
python -m pytest                  # gstbench's contract checks for a $kind
```

$usage

Edit `$module/__init__.py`; docs/plugins.md in gstbench explains every hook and rule.
''')

TEST = Template('''\
"""Tests of the $name plugin with gstbench's testing kit: the contract every $kind must meet."""

import gstbench_$ident
from gstbench.plugins import Registry
from gstbench.testing import $check

pytest_plugins = "gstbench.testing"


def test_the_${kind}_meets_gstbench_contract(register_plugin):
    registry = register_plugin($module, name="$name")
    $check(registry.get("${kind}s", "$name:$name")$check_args)


def test_the_plugin_is_installed_under_its_name():
    # `pip install -e .` registered the entry point: gstbench finds $name:$name by itself.
    assert Registry().get("${kind}s", "$name:$name").plugin == "$name"
''')

# The kinds a `gstbench run` flag can put into a built-in suite directly
RUN = {"scorer": "gstbench run --suite smoke --seeds 1 --scorer $name:$name",
       "metric": "gstbench run --suite smoke --seeds 1 --metric $name:$name"}

SUITE_FILE = Template('''\
A suite file that runs the `$suite` suite with it (docs/suites.md):

```toml
# my-suite.toml
name = "my-$suite"
extends = "$suite"

$lines
```

```bash
gstbench run --suite my-suite.toml
```''')

# kind -> (description, module code, extra arguments of the check, how to use it, in markdown)
KINDS: dict[str, tuple[str, str, str, str]] = {
    "scorer": (
        "A gstbench scorer: SNIP-style saliency |w * dL/dw| of each filter on a training batch",
        '''\
"""$name: a gstbench plugin with one scorer, SNIP-style saliency (Lee et al. 2019) of each filter."""

import torch
from torch.nn import functional as F

from gstbench import hookimpl
from gstbench.components import WEIGHTS


class Saliency:
    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def score(self, layer, ctx):
        """|w * dL/dw| summed over each filter (or per weight), on this pruning step's training batch."""
        x, y = ctx.training_batch(self.batch_size)  # seeded per cell and step
        model, was_training = ctx.model, ctx.model.training
        model.eval()  # BatchNorm running stats stay untouched
        try:
            loss = F.cross_entropy(model(x), y)
            (grad,) = torch.autograd.grad(loss, layer.conv.weight)  # .grad of the model stays as it was
        finally:
            model.train(was_training)
        saliency = (layer.conv.weight.detach() * grad).abs()
        if layer.granularity == "weights":
            return saliency.cpu()
        return saliency.flatten(1).sum(1).cpu()


def $ident(batch_size: int = 128):
    """SNIP-style saliency |w * dL/dw| of each filter on a training batch (higher: more important)."""
    return Saliency(batch_size)


@hookimpl
def register_scorers(register):
    register("$name", $ident, capabilities=[WEIGHTS])
''',
        "",
        f"```bash\n{RUN['scorer']}\n```",
    ),
    "target": (
        "A gstbench target: the lowest-scored units, ties broken at random",
        '''\
"""$name: a gstbench plugin with one target, the lowest-scored units with ties broken at random."""

import torch

from gstbench import hookimpl


class SmallestTiesRandom:
    def select(self, scores, alive, count, generator):
        candidates = alive.nonzero().flatten()
        shuffled = candidates[torch.randperm(candidates.numel(), generator=generator)]
        order = torch.argsort(scores[shuffled], stable=True)
        return shuffled[order[:count]]


def $ident():
    """The lowest-scored alive units; equal scores in a random order from the cell's generator."""
    return SmallestTiesRandom()


@hookimpl
def register_targets(register):
    register("$name", $ident)
''',
        "",
        SUITE_FILE.substitute(suite="tradeoff", lines="[base.prune]\ntarget = \"$name:$name\""),
    ),
    "effector": (
        "A gstbench effector: zero the filter and its BatchNorm channel, and keep them zero",
        '''\
"""$name: a gstbench plugin with one effector, zeroing filters with their BatchNorm channel for good."""

import torch

from gstbench import hookimpl


class ZeroForGood:
    def __init__(self):
        self.targets = []  # (layer, indices) pruned so far

    def apply(self, layer, indices, ctx):
        self.targets.append((layer, indices.to(layer.conv.weight.device)))
        self.after_step()
        return None  # shapes unchanged

    @torch.no_grad()
    def after_step(self):
        for layer, idx in self.targets:
            layer.conv.weight[idx] = 0
            if layer.conv.bias is not None:
                layer.conv.bias[idx] = 0
            if layer.bn is not None:  # else BatchNorm's beta would still emit a constant
                layer.bn.weight[idx] = 0
                layer.bn.bias[idx] = 0


def $ident():
    """Zero each targeted filter with its BatchNorm gamma and beta, again after every optimizer step."""
    return ZeroForGood()


@hookimpl
def register_effectors(register):
    register("$name", $ident)
''',
        "",
        SUITE_FILE.substitute(suite="tradeoff", lines="[base.prune]\neffector = \"$name:$name\""),
    ),
    "rewind": (
        "A gstbench rewind: replay the learning-rate schedule from a share of training",
        '''\
"""$name: a gstbench plugin with one rewind, learning-rate rewinding to a share of training."""

from gstbench import hookimpl
from gstbench.components import Resume


class RewindLearningRate:
    def __init__(self, share: float):
        if not 0 <= share < 1:
            raise ValueError(f"share must be in [0, 1), got {share!r}")
        self.share = share

    def checkpoint_step(self, steps_per_epoch, total_steps):
        return None  # keeps the trained weights: no stored state needed

    def rewind(self, ctx):
        return Resume(step=int(self.share * ctx.total_steps))


def $ident(share: float = 0.5):
    """Keep the pruned weights and replay the learning-rate schedule from ``share`` of training."""
    return RewindLearningRate(share)


@hookimpl
def register_rewinds(register):
    register("$name", $ident)
''',
        "",
        SUITE_FILE.substitute(suite="rewind", lines="[base]\nrewind = \"$name:$name\""),
    ),
    "regularizer": (
        "A gstbench regularizer: an L2 penalty on BatchNorm's gamma during training",
        '''\
"""$name: a gstbench plugin with one regularizer, an L2 penalty on BatchNorm's gamma during training."""

from torch import nn

from gstbench import hookimpl


class GammaL2:
    def __init__(self, strength: float):
        if not strength >= 0:
            raise ValueError(f"strength must be >= 0, got {strength!r}")
        self.strength = strength

    def penalty(self, model):
        """Added to every training step's loss: strength * sum of gamma^2 over the model's BatchNorms."""
        gammas = [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return self.strength * sum((g * g).sum() for g in gammas)


def $ident(strength: float = 1e-4):
    """strength * sum of BatchNorm gamma^2, added to the training loss."""
    return GammaL2(strength)


@hookimpl
def register_regularizers(register):
    register("$name", $ident)
''',
        "",
        SUITE_FILE.substitute(suite="methods", lines="[base.train]\nregularizer = \"$name:$name\""),
    ),
    "metric": (
        "A gstbench metric: the L2 norm of the model's weights",
        '''\
"""$name: a gstbench plugin with one metric, the L2 norm of the model's weights."""

import torch

from gstbench import hookimpl


class WeightNorm:
    def compute(self, ctx):
        with torch.no_grad():
            norm = torch.sqrt(sum((p.float() ** 2).sum() for p in ctx.model.parameters()))
        return {"weight_norm": float(norm),
                "weight_norm_settings": {"parameters": "all", "norm": "L2"}}


def $ident():
    """L2 norm of all the model's parameters."""
    return WeightNorm()


@hookimpl
def register_metrics(register):
    register("$name", $ident)
''',
        "",
        f"```bash\n{RUN['metric']}\n```",
    ),
    "model": (
        "A gstbench model: a small conv-BN-ReLU network for 1-D or 2-D inputs",
        '''\
"""$name: a gstbench plugin with one model, a small conv-BN-ReLU network for 1-D or 2-D inputs."""

from torch import nn

from gstbench import hookimpl
from gstbench.components import PrunableLayer


class SmallCNN(nn.Module):
    def __init__(self, input_shape, num_classes, width):
        super().__init__()
        dims = len(input_shape) - 1
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.conv1, self.bn1 = conv(input_shape[0], width, 3, padding=1, bias=False), bn(width)
        self.conv2, self.bn2 = conv(width, 2 * width, 3, padding=1, bias=False), bn(2 * width)
        self.pool, self.fc = pool, nn.Linear(2 * width, num_classes)
        # the layers a suite may prune, each with the BatchNorm that follows it
        self.prunable_layers = {"conv1": PrunableLayer(conv="conv1", bn="bn1"),
                                "conv2": PrunableLayer(conv="conv2", bn="bn2")}

    def forward(self, x):
        x = self.bn1(self.conv1(x)).relu()
        x = self.bn2(self.conv2(x)).relu()
        return self.fc(self.pool(x).flatten(1))


def $ident(input_shape, num_classes, width: int = 16):
    """Two conv-BN-ReLU blocks and a linear layer; prunable conv1 and conv2."""
    return SmallCNN(input_shape, num_classes, width)


@hookimpl
def register_models(register):
    register("$name", $ident)
''',
        "",
        SUITE_FILE.substitute(suite="tradeoff", lines="[base]\nmodel = \"$name:$name\"\n\n"
                              "# its own prunable layers replace the tradeoff's conv3 and conv4\n"
                              "[base.prune.layers.conv2]\nfraction = 0.5"),
    ),
    "dataset": (
        "A gstbench dataset: seeded Gaussian blobs in 1-D signals",
        '''\
"""$name: a gstbench plugin with one dataset, seeded Gaussian class blobs as 1-D signals."""

import torch

from gstbench import hookimpl
from gstbench.components import TensorData


def $ident(num_samples: int = 2000, length: int = 40, classes: int = 4, seed: int = 0):
    """Gaussian blobs: each class a random 1-D template plus noise; a quarter held out for testing."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(classes, 1, length, generator=g)
    y = torch.randint(0, classes, (num_samples,), generator=g)
    x = templates[y] + 0.8 * torch.randn(num_samples, 1, length, generator=g)
    n_train = num_samples * 3 // 4
    return TensorData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)


@hookimpl
def register_datasets(register):
    register("$name", $ident)
''',
        "",
        SUITE_FILE.substitute(suite="tradeoff", lines="[base]\ndataset = \"$name:$name\""),
    ),
}


def new_plugin(name: str, kind: str, parent: Path) -> list[Path]:
    """Write the package ``parent/name``: pyproject with the entry point, a module, a README and a test."""
    if not NAME_PATTERN.match(name):
        raise GstbenchError(f"plugin name {name!r}: use lowercase letters, digits and single dashes, "
                            f"starting with a letter (e.g. mysnip, my-snip)")
    if kind not in KINDS:
        raise GstbenchError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    root = parent / name
    if root.exists():
        raise GstbenchError(f"{root} already exists; choose another name or remove it")
    ident = name.replace("-", "_")
    module = f"gstbench_{ident}"
    description, code, check_args, usage = KINDS[kind]
    values = {"name": name, "ident": ident, "module": module, "kind": kind, "description": description,
              "check": f"check_{kind}", "check_args": check_args}
    usage = Template(usage).substitute(values)
    files = {
        root / "pyproject.toml": PYPROJECT.substitute(values),
        root / "README.md": README.substitute(values, usage=usage),
        root / module / "__init__.py": Template(code).substitute(values),
        root / "tests" / f"test_{ident}.py": TEST.substitute(values),
    }
    for path, text in files.items():
        inside(parent, path, "the directory new-plugin writes into")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


def next_steps(name: str, kind: str, root: Path) -> list[str]:
    """The commands that install, test and run the package ``new_plugin`` wrote at ``root``."""
    run = Template(RUN[kind]).substitute(name=name) if kind in RUN else f"see {root / 'README.md'}"
    return [f"pip install -e {root}", f"python -m pytest {root}", run]
