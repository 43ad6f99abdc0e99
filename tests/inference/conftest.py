"""Fakes for the GPU paths: ``torch.cuda`` on a CPU-only torch, and ``tensorrt``.

Neither a GPU nor TensorRT is available where these tests run. The fakes let the
code *around* those APIs run for real — device and stream handling, CUDA-graph
capture arguments, engine and timing caches, batching and padding, the fallback —
while recording what was asked of the API. They cannot tell whether the real API
behaves as its documentation says; the tests marked ``gpu`` do that.

``fake_cuda``: ``torch.cuda`` reports two GPUs; tensors asked for on ``cuda:N`` live
on the CPU; ``torch.cuda.device``, streams and graphs are recorders that track the
current device. ``fake_tensorrt``: a ``tensorrt`` module whose "engines" compute
``y[:, k] = (k + 1) · x[:, 0] + x[:, 1:].sum(1)`` from the input at the address
the execution context was given, and whose timing caches are sets of entries.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

# -- torch.cuda --------------------------------------------------------------------


@dataclass(eq=False)
class FakeStream:
    device: int
    default: bool = False
    waits: list[FakeStream] = field(default_factory=list)

    @property
    def cuda_stream(self) -> int:
        return 1000 + self.device + (0 if self.default else 100)

    def wait_stream(self, other: FakeStream) -> None:
        self.waits.append(other)

    def synchronize(self) -> None:
        pass


class FakeCuda:
    """Patches ``torch.cuda`` (and CUDA tensor creation) for one test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, torch: Any) -> None:
        self.torch = torch
        self.current = 0
        #: what the code did: ("device", index) on entering torch.cuda.device,
        #: ("capture", kwargs, current device), ("replay", current device), ...
        self.events: list[tuple[Any, ...]] = []
        self.default_streams = {i: FakeStream(i, default=True) for i in range(2)}
        cuda = torch.cuda
        fake = self

        class Device:
            def __init__(self, device: Any) -> None:
                self.index = fake._index(device)

            def __enter__(self) -> None:
                self.previous = fake.current
                fake.current = self.index
                fake.events.append(("device", self.index))

            def __exit__(self, *exc: object) -> None:
                fake.current = self.previous

        class Graph:
            def replay(self) -> None:
                fake.events.append(("replay", fake.current))

        @contextlib.contextmanager
        def graph(cuda_graph: Any, **kwargs: Any) -> Any:
            fake.events.append(("capture", kwargs, fake.current))
            yield

        @contextlib.contextmanager
        def stream(s: FakeStream) -> Any:
            fake.events.append(("stream", s, fake.current))
            yield

        props = types.SimpleNamespace(name="Fake GPU", major=9, minor=0)
        for name, value in {
            "is_available": lambda: True,
            "device_count": lambda: 2,
            "current_device": lambda: fake.current,
            "get_device_properties": lambda device=None: props,
            "get_device_name": lambda device=None: props.name,
            "device": Device,
            "Stream": lambda device=None, **kw: FakeStream(fake._index(device)),
            "current_stream": lambda device=None: fake.default_streams[
                fake._index(device)
            ],
            "stream": stream,
            "CUDAGraph": Graph,
            "graph": graph,
            "synchronize": lambda device=None: None,
        }.items():
            monkeypatch.setattr(cuda, name, value)
        real_empty, real_zeros = torch.empty, torch.zeros

        def on_cpu(real: Any) -> Any:
            def create(*args: Any, device: Any = None, pin_memory: bool = False, **kw):
                if device is not None and torch.device(device).type == "cuda":
                    device = None
                return real(*args, device=device, **kw)

            return create

        monkeypatch.setattr(torch, "empty", on_cpu(real_empty))
        monkeypatch.setattr(torch, "zeros", on_cpu(real_zeros))

    def _index(self, device: Any) -> int:
        if device is None:
            return self.current
        if isinstance(device, int):
            return device
        index = self.torch.device(device).index
        return self.current if index is None else index

    def of_kind(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]


@pytest.fixture
def fake_cuda(monkeypatch) -> FakeCuda:
    torch = pytest.importorskip("torch")
    return FakeCuda(monkeypatch, torch)


# -- tensorrt ------------------------------------------------------------------------
_ENGINE_MAGIC = b"FAKE-ENGINE"
_CACHE_MAGIC = b"FAKE-TC"
_FOREIGN_MAGIC = b"FAKE-TC-OTHER-GPU"  # a cache TensorRT reads but will not use


def _host_array(address: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    buffer = (ctypes.c_float * count).from_address(address)
    return np.ctypeslib.as_array(buffer).reshape(shape)


def fake_network_output(x: np.ndarray, out_channels: int) -> np.ndarray:
    """What a fake engine computes: y[:, k] = (k + 1) · x[:, 0] + x[:, 1:].sum(1)."""
    rest = x[:, 1:].sum(axis=1) if x.shape[1] > 1 else 0.0
    return np.stack(
        [(k + 1) * x[:, 0] + rest for k in range(out_channels)], axis=1
    ).astype(np.float32)


def make_fake_tensorrt(version: str = "10.13.0.35") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    #: what happened: shapes built, builder configs made, contexts executed
    trt.state = types.SimpleNamespace(
        builds=[], configs=[], executions=[], fail_build=None, on_build=None
    )
    state = trt.state

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        def __init__(self) -> None:
            pass

    ILogger.Severity = Severity  # type: ignore[attr-defined]

    class BuilderFlag(enum.Enum):
        TF32 = 6
        DEBUG = 2

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 1

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        BF16 = 7

    class TimingCache:
        def __init__(self, entries: set[str], foreign: bool = False) -> None:
            self.entries, self.foreign = set(entries), foreign

        def serialize(self) -> bytes:
            magic = _FOREIGN_MAGIC if self.foreign else _CACHE_MAGIC
            return magic + json.dumps(sorted(self.entries)).encode()

        def combine(self, input_cache: TimingCache, ignore_mismatch: bool) -> bool:
            if input_cache.foreign and not ignore_mismatch:
                return False
            self.entries |= input_cache.entries
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class Config:
        def __init__(self) -> None:
            self.flags = {BuilderFlag.TF32}  # on by default, as in TensorRT
            self.profiles: list[Profile] = []
            self.timing_cache: TimingCache | None = None
            self.pool_limits: dict[Any, int] = {}

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pool_limits[pool] = size

        def set_flag(self, flag: Any) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag: Any) -> None:
            self.flags.discard(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self.flags

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob: Any) -> TimingCache:
            blob = bytes(blob)
            if not blob:
                return TimingCache(set())
            for magic, foreign in ((_FOREIGN_MAGIC, True), (_CACHE_MAGIC, False)):
                if blob.startswith(magic):
                    return TimingCache(json.loads(blob[len(magic) :]), foreign)
            raise RuntimeError("invalid timing cache")

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache.foreign and not ignore_mismatch:
                return False
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return self.timing_cache

    class Tensor:
        def __init__(self, name: str) -> None:
            self.name = name

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.out_channels = 0

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            import onnx

            model = onnx.load(path)
            self.network.inputs = [Tensor(v.name) for v in model.graph.input]
            dims = model.graph.output[0].type.tensor_type.shape.dim
            self.network.out_channels = int(dims[1].dim_value)
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            config = Config()
            state.configs.append(config)
            return config

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> Any:
            if state.on_build is not None:
                state.on_build()
            if state.fail_build is not None:
                self.logger.log(Severity.ERROR, state.fail_build)
                return None
            name = network.get_input(0).name
            shape = config.profiles[0].shapes[name][1]
            assert config.timing_cache is not None, "built without a timing cache"
            config.timing_cache.entries.add(f"conv{list(shape)}")
            state.builds.append(shape)
            spec = {"shape": list(shape), "out_channels": network.out_channels}
            return _ENGINE_MAGIC + json.dumps(spec).encode()

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            return tuple(shape) == self.engine.shape

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name == "x":
                return self.engine.shape
            n, _, h, w = self.engine.shape
            return (n, self.engine.out_channels, h, w)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            x = _host_array(self.addresses["x"], self.engine.shape)
            y = _host_array(self.addresses["y"], self.get_tensor_shape("y"))
            y[...] = fake_network_output(x, self.engine.out_channels)
            state.executions.append((self.engine.shape, stream_handle))
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, spec: dict[str, Any]) -> None:
            self.shape = tuple(spec["shape"])
            self.out_channels = int(spec["out_channels"])

        def create_execution_context(self) -> Context:
            return Context(self)

        def get_tensor_name(self, i: int) -> str:
            return ("x", "y")[i]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name == "x" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType.FLOAT

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, blob: Any) -> Engine | None:
            blob = bytes(blob)
            if not blob.startswith(_ENGINE_MAGIC):
                self.logger.log(Severity.ERROR, "engine deserialization failed")
                return None
            return Engine(json.loads(blob[len(_ENGINE_MAGIC) :]))

    for obj in (
        ILogger, BuilderFlag, NetworkDefinitionCreationFlag, MemoryPoolType,
        TensorIOMode, DataType, Builder, OnnxParser, Runtime,
    ):  # fmt: skip
        setattr(trt, obj.__name__, obj)
    trt.ITimingCache = TimingCache
    trt.network_output = fake_network_output  # for the tests' expected values
    return trt


@pytest.fixture
def fake_tensorrt(monkeypatch) -> types.ModuleType:
    """A fake ``tensorrt`` in ``sys.modules`` (TensorRT's logger cache reset)."""
    from deepz_live.inference._tensorrt_support import tensorrt_logger

    trt = make_fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    tensorrt_logger.cache_clear()  # the process-wide logger derives from trt
    yield trt
    tensorrt_logger.cache_clear()
