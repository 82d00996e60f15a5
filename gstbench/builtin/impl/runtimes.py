"""What the built-in runtimes build: eager, torch.compile, ONNX Runtime, sparse CSR and 2:4 semi-structured.

Registered in gstbench/builtin/runtimes.py. Each says in one line why it cannot run a model on a device
(``unavailable``) and makes the model, in eval mode, ready for one input shape (``prepare``); ``tolerance`` is how
far its outputs may stand from eager's (rtol, atol) before its times mean nothing (gstbench/builtin/speed.py).
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Call = Callable[[torch.Tensor], torch.Tensor]
EXTRA = "pip install 'gstbench[speed]'"


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": said once in the docs instead
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().to_sparse_csr()


def _inference(model: nn.Module) -> Call:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)
    return run


class Eager:
    tolerance = (0.0, 0.0)

    def unavailable(self, model: nn.Module, device: torch.device) -> str | None:
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Call:
        return _inference(model)


class Compiled:
    tolerance = (1e-4, 1e-5)
    MODES = ("default", "reduce-overhead", "max-autotune")

    def __init__(self, mode: str):
        if mode not in self.MODES:
            raise ValueError(f"compile's mode {mode!r} is not one of {', '.join(self.MODES)}")
        self.mode = mode

    def unavailable(self, model: nn.Module, device: torch.device) -> str | None:
        if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return "torch.compile's inductor needs a C++ compiler on CPU, and none is on PATH (install g++)"
        if device.type == "cuda" and not torch.cuda.is_available():
            return "no CUDA device here for torch.compile's GPU kernels"
        return None

    def fresh(self) -> None:
        """Before each pair of networks is prepared: dynamo caches by the forward's code, which all instances of a
        model class share, and past its recompile limit (8) it would run the next networks eagerly, silently."""
        import logging

        torch._dynamo.reset()
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on CPU hosts

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Call:
        import torch._inductor.config as inductor

        compiled = torch.compile(model, backend="inductor", mode=self.mode, dynamic=False)
        run = _inference(compiled)
        # compiles for this shape (the preparation, not a timed call) on the cell's threads: inductor's pool of
        # compile workers would take the cores other cells are timed on
        with inductor.patch(compile_threads=torch.get_num_threads()):
            run(example)
        return run


class OnnxRuntime:
    tolerance = (1e-4, 1e-5)

    def unavailable(self, model: nn.Module, device: torch.device) -> str | None:
        missing = [m for m in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} not installed: {EXTRA}"
        if device.type == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "this onnxruntime has no CUDA execution provider (pip install onnxruntime-gpu)"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Call:
        import onnxruntime as ort

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        provider = "CUDAExecutionProvider" if example.device.type == "cuda" else "CPUExecutionProvider"
        session = ort.InferenceSession(program.model_proto.SerializeToString(), options, providers=[provider])
        name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0]).to(x.device)
        return run


class _CSRLinear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = to_csr(linear.weight)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        out = (self.weight @ rows.T).T
        out = out if self.bias is None else out + self.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


class _CSRConv(nn.Module):
    """A convolution as CSR weights times the input's unfolded patches (1-D convolutions as 2-D of height 1)."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d):
        super().__init__()
        self.one_d = isinstance(conv, nn.Conv1d)
        pair = (lambda v: (1, v[0]) if self.one_d else tuple(v))
        self.kernel, self.stride = pair(conv.kernel_size), pair(conv.stride)
        self.padding, self.dilation = (0, conv.padding[0]) if self.one_d else tuple(conv.padding), pair(conv.dilation)
        self.out_channels = conv.out_channels
        self.weight = to_csr(conv.weight.reshape(conv.out_channels, -1))
        self.bias = None if conv.bias is None else conv.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.unsqueeze(2) if self.one_d else x
        patches = F.unfold(x2, self.kernel, self.dilation, self.padding, self.stride)  # (N, C*k, L)
        n, ck, length = patches.shape
        out = (self.weight @ patches.transpose(0, 1).reshape(ck, n * length)).reshape(self.out_channels, n, length)
        out = out.transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias[:, None]
        if self.one_d:
            return out
        height = (x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (self.kernel[0] - 1) - 1) // self.stride[0] + 1
        return out.reshape(n, self.out_channels, height, -1)


def _csr_eligible(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


class SparseCSR:
    tolerance = (1e-4, 1e-5)
    sparse = True  # the parent it is compared with runs dense, in eager: a sparse format of it is no baseline

    def unavailable(self, model: nn.Module, device: torch.device) -> str | None:
        if device.type != "cpu":
            return f"sparse-csr runs PyTorch's CSR kernels on CPU, not {device.type} (on CUDA: semi-structured)"
        if not any(_csr_eligible(m) for m in model.modules()):
            return "sparse-csr has no linear or convolution layer (groups 1, zero padding) to store as CSR"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Call:
        sparse = copy.deepcopy(model).eval()
        for name, module in list(sparse.named_modules()):
            if name and _csr_eligible(module):
                parent, _, leaf = name.rpartition(".")
                owner = sparse.get_submodule(parent) if parent else sparse
                setattr(owner, leaf, _CSRLinear(module) if isinstance(module, nn.Linear) else _CSRConv(module))
        return _inference(sparse)


def has_2_4_pattern(weight: torch.Tensor) -> bool:
    """Two zeros (at least) in every group of 4 consecutive inputs of every output row."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.reshape(weight.shape[0], -1, 4) == 0).sum(-1) >= 2).all())


class EagerHalf:
    """Eager in fp16: the dense baseline of the fp16 2:4 kernels, so that their speed-up is the sparsity's, not the
    precision's (not a runtime of its own: ``SemiStructured.baseline``)."""

    tolerance = (2e-2, 2e-2)

    def unavailable(self, model: nn.Module, device: torch.device) -> str | None:
        return None if device.type == "cuda" else f"fp16 eager is the 2:4 kernels' baseline on CUDA, not {device.type}"

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Call:
        run = _inference(copy.deepcopy(model).eval().half())
        return lambda x: run(x.half()).float()


class SemiStructured:
    tolerance = (2e-2, 2e-2)  # fp16
    sparse = True
    baseline = EagerHalf()  # the parent dense at the kernels' precision

    def unavailable(self, model: nn.Module, device: torch.device) -> str | None:
        if device.type != "cuda" or not torch.cuda.is_available():
            return f"semi-structured 2:4 kernels run on CUDA GPUs (compute capability 8.0+), not {device.type}"
        if torch.cuda.get_device_capability(device) < (8, 0):
            return (f"semi-structured 2:4 kernels need compute capability 8.0+; {torch.cuda.get_device_name(device)} "
                    f"has less")
        if not any(isinstance(m, nn.Linear) and has_2_4_pattern(m.weight) for m in model.modules()):
            return "no linear layer's weights have the 2:4 pattern (2 zeros in every 4 consecutive inputs)"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Call:
        from torch.sparse import to_sparse_semi_structured

        half = copy.deepcopy(model).eval().half()
        for module in half.modules():
            if isinstance(module, nn.Linear) and has_2_4_pattern(module.weight):
                module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
        run = _inference(half)
        return lambda x: run(x.half()).float()
