"""Model files: round trip, every way a file can be wrong, compatibility checks."""

from __future__ import annotations

import json
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from deepz_live.inference import (
    DEFAULT_MODEL_NAME,
    GeneratorConfig,
    ModelFileError,
    ModelInfo,
    ModelMismatchWarning,
    _modelfile,
    build_generator,
    bundled_model_names,
    check_compatibility,
    load_model,
    read_model_info,
    resolve_model_path,
    save_model,
)
from deepz_live.inference._modelfile import FORMAT_VERSION, METADATA_KEY

TINY = GeneratorConfig(base_width=4, depth=2)


def make_info(config: GeneratorConfig = TINY, **changes) -> ModelInfo:
    fields = {
        "name": "tiny test model",
        "generator": config.to_dict(),
        "normalization": {"offset": 100.0, "percentile": 99.9, "scale": 1234.5},
        "pixel_size_um": 0.325,
        "wavelength_um": 0.525,
        "na": 0.75,
        "dz_range_um": 10.0,
        "dpm_scale_um": 10.0,
        "training": {
            "data": [{"source": "stack_001.ome.tif", "sha256": "ab" * 32}],
            "epochs": 3,
            "seed": 7,
        },
        "validation": {"psnr_gain_db": {"2": 1.5, "4": 3.25}},
    }
    fields.update(changes)
    return ModelInfo(**fields)


def trained_like(config: GeneratorConfig = TINY) -> torch.nn.Module:
    """A generator with random (not zero-initialised) weights and non-default stats."""
    torch.manual_seed(0)
    generator = build_generator(config)
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    generator.train()
    with torch.no_grad():
        generator(torch.randn(4, config.in_channels, 8, 8))  # updates batch-norm stats
    return generator.eval()


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, trained_like(), make_info())
    return path


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
@pytest.mark.parametrize("pass_state_dict", [False, True])
def test_round_trip(tmp_path, norm, pass_state_dict):
    config = GeneratorConfig(base_width=4, depth=2, norm=norm, residual=False)
    generator = trained_like(config)
    path = tmp_path / "model.safetensors"
    weights = generator.state_dict() if pass_state_dict else generator
    written = save_model(path, weights, make_info(config))

    loaded, info = load_model(path)
    assert info == written
    assert info.generator_config == config
    assert written.software["torch"] == torch.__version__
    assert not loaded.training
    x = torch.randn(2, 2, 12, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), generator(x))
    # Nothing else was left in the folder (the save goes through a renamed temp file).
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_read_model_info_does_not_build_the_network(model_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("read_model_info built a network")

    monkeypatch.setattr(_modelfile, "build_generator", refuse)
    info = read_model_info(model_path)
    assert info.name == "tiny test model"
    assert info.format_version == FORMAT_VERSION
    assert info.training["data"][0]["sha256"] == "ab" * 32


def test_loading_never_unpickles(model_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    generator, info = load_model(model_path)
    read_model_info(model_path)
    assert info.name == "tiny test model"
    assert generator(torch.zeros(1, 2, 4, 4)).shape == (1, 1, 4, 4)


def test_info_survives_json_with_inf_and_numpy_values():
    info = make_info(
        validation={"psnr": math.inf, "ssim": np.float32(0.5)},
        pixel_size_um=np.float64(0.65),
    )
    back = ModelInfo.from_json(info.to_json())
    assert back.validation == {"psnr": math.inf, "ssim": 0.5}
    assert back.pixel_size_um == 0.65


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no model file at"):
        load_model(tmp_path / "absent.safetensors")
    with pytest.raises(ModelFileError, match="not a file"):
        read_model_info(tmp_path)


def test_truncated_file(model_path):
    data = model_path.read_bytes()
    model_path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(model_path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        read_model_info(path)
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(path)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_safetensors_file_from_elsewhere(tmp_path, metadata):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, path, metadata=metadata)
    with pytest.raises(ModelFileError, match="not a deepz-live model"):
        load_model(path)


def _write_with_metadata(path, text, tensors=None):
    tensors = build_generator(TINY).state_dict() if tensors is None else tensors
    save_file(dict(tensors), path, metadata={METADATA_KEY: text})


def test_unsupported_format_version(tmp_path):
    path = tmp_path / "future.safetensors"
    data = make_info().to_dict()
    data["format_version"] = 2
    _write_with_metadata(path, json.dumps(data))
    with pytest.raises(ModelFileError, match=r"format version 2.*Upgrade"):
        load_model(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format_version": 1, "name": "x"}', "lacks field"),
        (json.dumps({**make_info().to_dict(), "pixel_size_um": -1}), "pixel_size_um"),
        (
            json.dumps({**make_info().to_dict(), "generator": {"depth": 99}}),
            "depth",
        ),
    ],
)
def test_invalid_model_information(tmp_path, text, message):
    path = tmp_path / "bad.safetensors"
    _write_with_metadata(path, text)
    with pytest.raises(ModelFileError, match=message):
        read_model_info(path)


def test_weights_that_do_not_match_the_architecture(tmp_path):
    path = tmp_path / "mismatch.safetensors"
    wider = build_generator(GeneratorConfig(base_width=8, depth=2)).state_dict()
    _write_with_metadata(path, make_info(TINY).to_json(), wider)
    with pytest.raises(ModelFileError, match=r"wrong shape: encoders\.0\.0\.weight"):
        load_model(path)

    state = build_generator(TINY).state_dict()
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(2)
    _write_with_metadata(path, make_info(TINY).to_json(), state)
    with pytest.raises(ModelFileError, match=r"missing: head\.bias; unexpected: extra"):
        load_model(path)


def test_save_refuses_weights_that_do_not_match_info(tmp_path):
    path = tmp_path / "model.safetensors"
    other = GeneratorConfig(base_width=8, depth=2)
    with pytest.raises(ValueError, match=r"differs from info\.generator"):
        save_model(path, build_generator(other), make_info(TINY))
    with pytest.raises(ValueError, match=r"do not match info\.generator"):
        save_model(path, build_generator(other).state_dict(), make_info(TINY))
    assert list(tmp_path.iterdir()) == []


def test_bundled_models(tmp_path, monkeypatch):
    monkeypatch.setattr(_modelfile, "BUNDLED_MODELS_DIR", tmp_path)
    with pytest.raises(
        ModelFileError, match=r"no bundled model named 'default'.*deepz train"
    ):
        resolve_model_path(DEFAULT_MODEL_NAME)
    save_model(tmp_path / "mine.safetensors", trained_like(), make_info())
    assert bundled_model_names() == ["mine"]
    assert resolve_model_path("mine") == tmp_path / "mine.safetensors"
    _, info = load_model("mine")
    assert info.name == "tiny test model"
    with pytest.raises(ModelFileError, match="bundled models: mine"):
        resolve_model_path("other")


def test_the_shipped_default_model_loads_or_is_explained():
    if DEFAULT_MODEL_NAME in bundled_model_names():
        generator, info = load_model(DEFAULT_MODEL_NAME)
        assert info.generator_config == generator.config
    else:
        with pytest.raises(ModelFileError, match="ships with deepz-live"):
            load_model(DEFAULT_MODEL_NAME)


def test_paths_are_not_taken_for_names(model_path, monkeypatch):
    monkeypatch.chdir(model_path.parent)
    assert resolve_model_path("./model.safetensors").samefile(model_path)
    assert resolve_model_path("model.safetensors").samefile(model_path)
    assert resolve_model_path(model_path) == model_path


def test_compatible_data_gives_no_warning():
    info = make_info()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_compatibility(info, pixel_size_um=0.34, wavelength_um=0.5) == []
        # The model does not record the wavelength: nothing to compare.
        unknown = make_info(wavelength_um=None)
        assert check_compatibility(unknown, wavelength_um=0.7) == []


def test_pixel_size_mismatch_warns_with_both_values():
    with pytest.warns(ModelMismatchWarning) as record:
        messages = check_compatibility(make_info(), pixel_size_um=0.65, na=0.75)
    assert len(messages) == len(record) == 1
    text = str(record[0].message)
    assert "0.65 µm" in text
    assert "0.325 µm" in text
    assert "resample" in text
    assert "train" in text


def test_strict_mismatch_raises():
    with pytest.raises(ModelFileError, match=r"wavelength is 0\.67 µm.*0\.525 µm"):
        check_compatibility(make_info(), wavelength_um=0.67, strict=True)
    with pytest.raises(ModelFileError, match="numerical aperture"):
        check_compatibility(make_info(), na=0.45, strict=True)
    # A looser tolerance accepts the same data.
    assert check_compatibility(make_info(), wavelength_um=0.67, rel_tol=0.3) == []


def test_float16_weights_halve_the_file_and_load_as_float32(tmp_path) -> None:
    generator = trained_like()
    info = make_info()
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_model(full, generator, info)
    written = save_model(half, generator, info, weights_dtype="float16")
    assert written.training["stored_weights_dtype"] == "float16"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 2, 32, 32)
    generator.eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), generator(x), rtol=2e-2, atol=2e-3)
    with pytest.raises(ValueError, match="weights_dtype"):
        save_model(tmp_path / "x.safetensors", generator, info, weights_dtype="int8")


def test_saved_model_has_the_usual_file_permissions(tmp_path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        path = tmp_path / "m.safetensors"
        save_model(path, trained_like(), make_info())
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
