"""Built-in runtimes: how a network runs for inference when its speed is measured (PyTorch eager, torch.compile,
ONNX Runtime, PyTorch's sparse CSR format on CPU, 2:4 semi-structured sparse kernels on CUDA).

Only the factories and their registration live here, so that listing components loads no torch; what they build
is in impl/runtimes.py. A plugin adds another (TensorRT, OpenVINO) with ``register_runtimes``.
"""

from __future__ import annotations

from gstbench.plugins import hookimpl


def eager():
    """PyTorch eager mode, in inference mode: the reference every other runtime's outputs are checked against."""
    from gstbench.builtin.impl.runtimes import Eager

    return Eager()


def compile(mode: str = "default"):
    """torch.compile with inductor (needs a C++ compiler on CPU), static shapes: compiled once per batch size."""
    from gstbench.builtin.impl.runtimes import Compiled

    return Compiled(str(mode))


def onnxruntime():
    """ONNX Runtime: exported with torch.onnx (dynamo), its CPU execution provider (CUDA's on a GPU)."""
    from gstbench.builtin.impl.runtimes import OnnxRuntime

    return OnnxRuntime()


def sparse_csr():
    """PyTorch's sparse CSR format on CPU: every linear and convolution weight stored and multiplied as CSR."""
    from gstbench.builtin.impl.runtimes import SparseCSR

    return SparseCSR()


def semi_structured():
    """2:4 semi-structured sparse kernels on CUDA (fp16): linear weights with 2 zeros in every 4 inputs."""
    from gstbench.builtin.impl.runtimes import SemiStructured

    return SemiStructured()


@hookimpl
def register_runtimes(register):
    register("eager", eager)
    register("compile", compile)
    register("onnxruntime", onnxruntime)
    register("sparse-csr", sparse_csr)
    register("semi-structured", semi_structured)
