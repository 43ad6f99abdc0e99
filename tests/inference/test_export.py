"""The ONNX export cache: what its key holds, where it lives, how export is called."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from deepz_live.inference import (
    GeneratorConfig,
    InferenceError,
    ModelInfo,
    _export,
    build_generator,
    export_onnx,
    save_model,
)
from deepz_live.inference._export import (
    EXPORT_FORMAT,
    cached_onnx,
    default_opset,
    onnx_cache_key,
)

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")

KEY = {
    "model_sha256": "ab" * 32,
    "precision": "fp32",
    "opset": 18,
    "torch_version": "2.13.0",
    "onnxscript_version": "0.7.2",
}


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("model_sha256", "cd" * 32),
        ("precision", "fp16"),
        ("opset", 22),
        ("torch_version", "2.14.0"),
        ("onnxscript_version", "0.8.0"),
    ],
)
def test_the_export_key_changes_with_each_ingredient(name, other) -> None:
    assert onnx_cache_key(**{**KEY, name: other}) != onnx_cache_key(**KEY)


def test_the_export_key_holds_the_recipe_version(monkeypatch) -> None:
    key = onnx_cache_key(**KEY)
    monkeypatch.setattr(_export, "EXPORT_FORMAT", EXPORT_FORMAT + 1)
    assert onnx_cache_key(**KEY) != key


@pytest.fixture
def model(tmp_path) -> Path:
    config = GeneratorConfig(base_width=4, depth=2)
    info = ModelInfo(
        name="tiny",
        generator=config.to_dict(),
        normalization={"offset": 100.0, "percentile": 99.5, "min_scale": 1.0},
        pixel_size_um=0.325,
        dz_range_um=6.0,
        dpm_scale_um=6.0,
        created="2026-11-21T00:00:00+00:00",
    )
    path = tmp_path / "tiny.safetensors"
    save_model(path, build_generator(config), info)
    return path


@pytest.fixture
def exports(monkeypatch) -> list[tuple[Path, str, int]]:
    """export_onnx replaced by a recorder that writes a placeholder file."""
    made: list[tuple[Path, str, int]] = []

    def fake_export(model, out, *, opset=None, precision="fp32"):
        made.append((out, precision, opset))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"onnx")
        return out

    monkeypatch.setattr(_export, "export_onnx", fake_export)
    return made


def test_cached_exports_are_redone_after_an_upgrade_or_another_opset(
    model, exports, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = cached_onnx(model)
    assert first.parent == tmp_path / "cache" / "deepz-live" / "onnx"
    assert first.name.startswith("tiny-") and first.suffix == ".onnx"
    assert cached_onnx(model) == first and len(exports) == 1  # reused
    assert exports[0][1:] == ("fp32", 18)

    monkeypatch.setattr(torch, "__version__", "9.9.0")  # torch was upgraded
    upgraded = cached_onnx(model)
    assert upgraded != first and len(exports) == 2
    assert cached_onnx(model, opset=19) not in (first, upgraded)
    bf16 = cached_onnx(model, precision="bf16")
    assert bf16.name.endswith("-bf16.onnx") and exports[-1][1:] == ("bf16", 22)
    assert len(exports) == 4


def test_cached_exports_ignore_a_relative_xdg_cache_home(
    model, exports, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")
    path = cached_onnx(model)
    assert path.is_absolute()
    assert path.parent == tmp_path / "home" / ".cache" / "deepz-live" / "onnx"


def test_default_opsets() -> None:
    assert default_opset("fp32") == default_opset("fp16") == 18
    assert default_opset("bf16") == 22


class _Called(Exception):
    pass


def test_export_asks_for_the_dynamo_exporter_and_its_optimizer(
    model, tmp_path, monkeypatch
) -> None:
    """``optimize`` is passed where torch.onnx.export has it (2.6+; on by default
    only from 2.7), and not where it does not."""
    pytest.importorskip("onnx")
    seen = {}

    def export(model, args=(), f=None, *, optimize=False, **kwargs):
        seen.update(kwargs, optimize=optimize)
        raise _Called

    def older_export(model, args=(), f=None, **kwargs):
        seen.update(kwargs)
        raise _Called

    monkeypatch.setattr(torch.onnx, "export", export)
    with pytest.raises(_Called):
        export_onnx(model, tmp_path / "m.onnx", precision="fp16")
    assert seen["dynamo"] is True and seen["opset_version"] == 18
    assert set(seen["dynamic_shapes"]["x"]) == {0, 2, 3}
    assert seen["optimize"] is True
    assert not (tmp_path / "m.onnx").exists()

    seen.clear()
    monkeypatch.setattr(torch.onnx, "export", older_export)
    with pytest.raises(_Called):
        export_onnx(model, tmp_path / "m.onnx", precision="bf16")
    assert seen["opset_version"] == 22 and "optimize" not in seen


def test_export_needs_torch_2_5(model, tmp_path, monkeypatch) -> None:
    pytest.importorskip("onnx")
    monkeypatch.setattr(torch, "__version__", "2.4.1+cu121")
    with pytest.raises(InferenceError, match=r"torch 2\.5 or newer.*2\.4\.1"):
        export_onnx(model, tmp_path / "m.onnx")
