"""The Deep-Z generator and discriminator: shapes, identity start, configs, cost."""

from __future__ import annotations

import json

import pytest
import torch

from deepz_live.inference import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    estimate_gflops,
    required_multiple,
)
from deepz_live.inference._networks import count_parameters, discriminator_output_shape

# Tiny networks: the tests run on two CPU cores.
TINY = {"base_width": 4, "depth": 2}


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
@pytest.mark.parametrize(
    ("downsampling", "upsampling"), [("maxpool", "bilinear"), ("conv", "transpose")]
)
@pytest.mark.parametrize("size", [(4, 4), (8, 12), (32, 20)])
def test_generator_output_has_input_size(norm, downsampling, upsampling, size):
    config = GeneratorConfig(
        **TINY, norm=norm, downsampling=downsampling, upsampling=upsampling
    )
    generator = build_generator(config).eval()
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        assert generator(x).shape == (2, 1, *size)


def test_generator_with_several_outputs():
    config = GeneratorConfig(**TINY, out_channels=3, residual=False)
    with torch.no_grad():
        y = build_generator(config)(torch.randn(1, 2, 8, 8))
    assert y.shape == (1, 3, 8, 8)


def test_required_multiple():
    assert required_multiple(GeneratorConfig(depth=4)) == 16
    assert required_multiple(GeneratorConfig(depth=3)) == 8


@pytest.mark.parametrize("size", [(20, 32), (32, 33), (8, 32)])
def test_bad_size_names_the_multiple(size):
    generator = build_generator(GeneratorConfig(base_width=2, depth=4))
    with pytest.raises(ValueError, match="multiples of 16"):
        generator(torch.randn(1, 2, *size))


def test_untrained_residual_generator_is_the_identity():
    config = GeneratorConfig(**TINY, residual=True)
    generator = build_generator(config).eval()
    x = torch.randn(3, 2, 16, 8)
    with torch.no_grad():
        y = generator(x)
    # Exactly: the zero head adds 0.0 to every pixel.
    assert torch.equal(y, x[:, :1])


def test_untrained_residual_generator_still_learns():
    """The zero head must not block gradients: one step moves the output."""
    generator = build_generator(GeneratorConfig(**TINY))
    x = torch.randn(2, 2, 8, 8)
    target = torch.randn(2, 1, 8, 8)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss(generator(x), target)
    loss.backward()
    assert generator.head.weight.grad.abs().sum() > 0
    optimizer.step()
    with torch.no_grad():
        assert not torch.equal(generator(x), x[:, :1])


def test_non_residual_generator_is_not_the_identity():
    generator = build_generator(GeneratorConfig(**TINY, residual=False)).eval()
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(generator(x), x[:, :1])


def test_generator_config_round_trip():
    config = GeneratorConfig(
        base_width=8,
        depth=3,
        residual=False,
        norm="batch",
        activation="relu",
        downsampling="conv",
        upsampling="transpose",
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert GeneratorConfig.from_dict(data) == config
    assert build_generator(config).config == config


def test_generator_config_missing_keys_take_defaults():
    assert GeneratorConfig.from_dict({"depth": 3}) == GeneratorConfig(depth=3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"depth": 0}, "depth"),
        ({"depth": 2.0}, "depth must be an integer"),
        ({"base_width": True}, "base_width must be an integer"),
        ({"norm": "layer"}, "norm must be one of"),
        ({"residual": "yes"}, "residual"),
        ({"architecture": "resnet"}, "architecture"),
        ({"kernel": 5}, "unknown GeneratorConfig field"),
    ],
)
def test_generator_config_rejects_bad_values(data, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig.from_dict(data)


def test_discriminator_config_round_trip_and_validation():
    config = DiscriminatorConfig(base_width=8, n_downsamplings=2, norm="none")
    assert DiscriminatorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="n_downsamplings"):
        DiscriminatorConfig(n_downsamplings=0)


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
@pytest.mark.parametrize(("n", "size"), [(3, (64, 64)), (2, (24, 40)), (1, (8, 6))])
def test_discriminator_patch_map_shape(norm, n, size):
    config = DiscriminatorConfig(base_width=4, n_downsamplings=n, norm=norm)
    discriminator = build_discriminator(config)
    with torch.no_grad():
        logits = discriminator(torch.randn(2, 3, *size))
    expected = (size[0] // 2**n, size[1] // 2**n)
    assert discriminator_output_shape(config, *size) == expected
    assert logits.shape == (2, 1, *expected)


def test_count_parameters():
    module = torch.nn.Conv2d(2, 3, 3)  # 2·3·9 weights + 3 biases
    assert count_parameters(module) == 57
    module.bias.requires_grad_(False)
    assert count_parameters(module, trainable_only=True) == 54
    # A 4-level width-16 U-Net: the size the DOMAIN brief's timings refer to.
    assert 1e6 < count_parameters(build_generator()) < 3e6


def _counted_gflops(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Brute force: 2 × MACs of every convolution, from the shapes seen at run time."""
    macs = 0

    def hook(layer, inputs, output):
        nonlocal macs
        # weight[0] is (in/groups, kh, kw) for a convolution: the MACs of one output
        # value; for a transposed convolution it is (out, kh, kw): what one input
        # value scatters.
        if isinstance(layer, torch.nn.ConvTranspose2d):
            macs += inputs[0].numel() * layer.weight[0].numel()
        else:
            macs += output.numel() * layer.weight[0].numel()

    handles = [
        layer.register_forward_hook(hook)
        for layer in module.modules()
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return 2 * macs / 1e9


@pytest.mark.parametrize(
    "config",
    [
        GeneratorConfig(base_width=4, depth=3),
        GeneratorConfig(
            base_width=3, depth=2, downsampling="conv", upsampling="transpose"
        ),
        GeneratorConfig(
            base_width=4, depth=1, in_channels=3, out_channels=2, residual=False
        ),
    ],
)
def test_flop_estimate_matches_a_count_with_hooks(config):
    height, width = 48, 32
    counted = _counted_gflops(
        build_generator(config).eval(),
        torch.randn(1, config.in_channels, height, width),
    )
    assert estimate_gflops(config, height, width) == pytest.approx(counted, rel=0.01)


def test_flop_estimate_of_the_default_generator():
    # DOMAIN.md: ~6 GFLOP per 256² plane at width 16, ~4× that at width 32, and
    # 4× for 4× the pixels.
    gflops = estimate_gflops(GeneratorConfig(), 256, 256)
    assert 5.0 < gflops < 7.0
    wide = estimate_gflops(GeneratorConfig(base_width=32), 256, 256)
    assert wide == pytest.approx(4 * gflops, rel=0.02)
    assert estimate_gflops(GeneratorConfig(), 512, 512) == pytest.approx(4 * gflops)
    with pytest.raises(ValueError, match="multiples of 16"):
        estimate_gflops(GeneratorConfig(), 250, 256)
