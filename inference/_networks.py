"""Deep-Z network architectures: the U-Net generator and the PatchGAN discriminator.

The generator takes ``[image, DPM]`` (the digital propagation matrix, in units of the
model's DPM scale) and returns the image refocused by the DPM. The discriminator judges
``[image, DPM, candidate]`` triples, patch by patch.

Both networks use only plain operations (convolution, normalisation, activation,
max-pooling, bilinear interpolation, concatenation) so that they export to ONNX and
TensorRT without custom layers.

torch is imported inside functions: importing ``inference`` must stay cheap for code
that never builds a network (STYLE.md). The ``nn.Module`` classes are therefore made
once, on first use, by :func:`_module_classes`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn

GENERATOR_ARCHITECTURE = "deepz-unet"
#: The faster variant: the image alone in, a fixed stack of planes out (one pass).
STACK_ARCHITECTURE = "deepz-stack"
GENERATOR_ARCHITECTURES = (GENERATOR_ARCHITECTURE, STACK_ARCHITECTURE)
DISCRIMINATOR_ARCHITECTURE = "patchgan"

NORMS = ("group", "batch", "none")
ACTIVATIONS = ("leaky_relu", "relu")
DOWNSAMPLINGS = ("maxpool", "conv")
UPSAMPLINGS = ("bilinear", "transpose")

# Slope of LeakyReLU for both networks (the usual GAN choice).
_LEAKY_SLOPE = 0.2
# GroupNorm uses this many groups (or the largest power of two dividing the width).
_MAX_GROUPS = 8


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    # bool is an int subclass; True as a width is a bug, not a 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build a config dataclass from a JSON dict; missing keys take their defaults.

    Unknown keys are an error: they come from a newer version whose networks this
    version cannot build faithfully.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} needs a dict, got {type(data).__name__}")
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(names)}"
        )
    return cls(**data)


@dataclass(frozen=True)
class GeneratorConfig:
    """Hyper-parameters of the Deep-Z U-Net generator.

    Two architectures share the U-Net body:

    - ``"deepz-unet"`` (Deep-Z as published): input ``[image, DPM]``, output the
      image refocused by the DPM. One pass per output plane.
    - ``"deepz-stack"``: input the image alone, output a fixed stack of planes at
      ``planes_um`` (evenly spaced). One pass gives the whole volume, so the
      encoder and decoder work is shared by all planes; planes and surfaces in
      between are interpolated linearly along z (see `interpolate_planes`).

    Parameters
    ----------
    architecture : str
        ``"deepz-unet"`` or ``"deepz-stack"``.
    in_channels : int
        Input channels: 2 for ``[image, DPM]``; 1 for ``"deepz-stack"``.
    out_channels : int
        Output channels: 1 for the refocused image; ``len(planes_um)`` for
        ``"deepz-stack"``.
    base_width : int
        Feature channels at full resolution; they double at each down-sampling.
    depth : int
        Number of down-samplings. Input height and width must be multiples of
        ``2**depth`` (see :func:`required_multiple`).
    residual : bool
        If true the network predicts a correction that is added to the input image
        (channel 0): refocusing by 0 µm is then the identity, a good prior. The last
        layer is zero-initialised, so an untrained network returns its input image.
    norm : str
        Normalisation after each 3×3 convolution: ``"group"``, ``"batch"`` or
        ``"none"``. Group norm does not depend on the batch size (small batches of
        large tiles are common in training).
    activation : str
        ``"leaky_relu"`` (slope 0.2) or ``"relu"``.
    downsampling : str
        ``"maxpool"`` (2×2 max-pool) or ``"conv"`` (learned 2×2 convolution, stride 2).
    upsampling : str
        ``"bilinear"`` (1×1 convolution, then ×2 bilinear interpolation) or
        ``"transpose"`` (2×2 transposed convolution, stride 2).
    planes_um : tuple of float
        ``"deepz-stack"`` only: the refocusing distances of the output channels,
        increasing and evenly spaced (µm). Empty for ``"deepz-unet"``.
    """

    architecture: str = GENERATOR_ARCHITECTURE
    in_channels: int = 2
    out_channels: int = 1
    base_width: int = 16
    depth: int = 4
    residual: bool = True
    norm: str = "group"
    activation: str = "leaky_relu"
    downsampling: str = "maxpool"
    upsampling: str = "bilinear"
    planes_um: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_choice("architecture", self.architecture, GENERATOR_ARCHITECTURES)
        # JSON gives lists; a frozen config must stay hashable
        object.__setattr__(self, "planes_um", tuple(float(p) for p in self.planes_um))
        self._check_planes()
        _check_int("in_channels", self.in_channels, 1)
        _check_int("out_channels", self.out_channels, 1)
        _check_int("base_width", self.base_width, 1)
        # 2**8 = 256-pixel multiples and 256× the base width at the bottom: beyond
        # that a refocusing network makes no sense and memory explodes.
        _check_int("depth", self.depth, 1, 8)
        _check_bool("residual", self.residual)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("downsampling", self.downsampling, DOWNSAMPLINGS)
        _check_choice("upsampling", self.upsampling, UPSAMPLINGS)

    def _check_planes(self) -> None:
        planes = self.planes_um
        if not self.is_stack:
            if planes:
                raise ValueError(
                    f"planes_um is for the {STACK_ARCHITECTURE!r} architecture only"
                )
            return
        if len(planes) < 2:
            raise ValueError(
                f"{STACK_ARCHITECTURE!r} needs at least 2 planes_um, got {planes}"
            )
        steps = [b - a for a, b in itertools.pairwise(planes)]
        if min(steps) <= 0 or max(steps) - min(steps) > 1e-6 * max(steps):
            raise ValueError(
                f"planes_um must increase in equal steps, got {list(planes)}"
            )
        if self.in_channels != 1 or self.out_channels != len(planes):
            raise ValueError(
                f"{STACK_ARCHITECTURE!r} takes 1 input channel and gives one output "
                f"channel per plane ({len(planes)}), got in_channels="
                f"{self.in_channels}, out_channels={self.out_channels}"
            )

    @property
    def is_stack(self) -> bool:
        """True for ``"deepz-stack"``: one pass outputs the fixed planes."""
        return self.architecture == STACK_ARCHITECTURE

    @classmethod
    def stack(
        cls, dz_range_um: float, step_um: float, **fields: Any
    ) -> GeneratorConfig:
        """A ``"deepz-stack"`` configuration with planes ``-range:+range:step``."""
        n = round(2 * dz_range_um / step_um)
        if n < 1 or abs(n * step_um - 2 * dz_range_um) > 1e-6 * dz_range_um:
            raise ValueError(
                f"the plane step {step_um} µm must divide the range "
                f"±{dz_range_um} µm into whole steps"
            )
        planes = tuple(float(-dz_range_um + k * step_um) for k in range(n + 1))
        return cls(
            architecture=STACK_ARCHITECTURE,
            in_channels=1,
            out_channels=len(planes),
            planes_um=planes,
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["planes_um"] = list(self.planes_um)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorConfig:
        """Build a configuration from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If a key is unknown or a value is invalid.
        """
        return _from_dict(cls, data)

    def widths(self) -> list[int]:
        """Feature channels at each level, full resolution first (bottleneck last)."""
        return [self.base_width * 2**level for level in range(self.depth + 1)]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Hyper-parameters of the conditional PatchGAN discriminator.

    Parameters
    ----------
    architecture : str
        Architecture name; only ``"patchgan"`` exists.
    in_channels : int
        Input channels: 3 for ``[image, DPM, candidate]`` (conditional GAN: the
        discriminator sees what the generator was asked to do).
    base_width : int
        Channels of the first layer; they double per stride-2 layer, up to 8×.
    n_downsamplings : int
        Number of stride-2 4×4 convolutions. Each patch logit then covers a
        receptive field of about ``2**(n_downsamplings + 2)`` pixels.
    norm : str
        ``"group"``, ``"batch"`` or ``"none"``; the first layer is never normalised.
    """

    architecture: str = DISCRIMINATOR_ARCHITECTURE
    in_channels: int = 3
    base_width: int = 32
    n_downsamplings: int = 3
    norm: str = "group"

    def __post_init__(self) -> None:
        _check_choice("architecture", self.architecture, (DISCRIMINATOR_ARCHITECTURE,))
        _check_int("in_channels", self.in_channels, 1)
        _check_int("base_width", self.base_width, 1)
        _check_int("n_downsamplings", self.n_downsamplings, 1, 6)
        _check_choice("norm", self.norm, NORMS)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiscriminatorConfig:
        """Build a configuration from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If a key is unknown or a value is invalid.
        """
        return _from_dict(cls, data)


def required_multiple(config: GeneratorConfig) -> int:
    """Return the number that input height and width must be multiples of.

    Every down-sampling halves the image and the up-sampling path must land exactly
    on the skip connections, hence ``2**depth``.
    """
    return 2**config.depth


def check_input_size(config: GeneratorConfig, height: int, width: int) -> None:
    """Raise a ValueError if ``height × width`` cannot go through the generator.

    Raises
    ------
    ValueError
        If height or width is not a positive multiple of :func:`required_multiple`.
    """
    multiple = required_multiple(config)
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ValueError(
            f"the generator (depth {config.depth}) needs height and width that are "
            f"multiples of {multiple}, got {height}×{width}; pad or crop the image "
            f"(e.g. to {_round_up(height, multiple)}×{_round_up(width, multiple)})"
        )


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-value // multiple) * multiple)


def _groups(channels: int) -> int:
    return math.gcd(channels, _MAX_GROUPS)


@functools.cache
def _module_classes() -> dict[str, type]:
    """Define the nn.Module classes (once): torch is imported only when needed."""
    import torch
    from torch import nn
    from torch.nn import functional

    def norm_layer(kind: str, channels: int) -> nn.Module:
        if kind == "group":
            return nn.GroupNorm(_groups(channels), channels)
        if kind == "batch":
            return nn.BatchNorm2d(channels)
        return nn.Identity()

    def activation_layer(kind: str) -> nn.Module:
        if kind == "relu":
            return nn.ReLU(inplace=True)
        return nn.LeakyReLU(_LEAKY_SLOPE, inplace=True)

    class ConvBlock(nn.Sequential):
        """Two 3×3 convolutions, each followed by normalisation and activation."""

        def __init__(self, in_ch: int, out_ch: int, norm: str, activation: str) -> None:
            # A bias before a normalisation layer is cancelled by its mean removal.
            bias = norm == "none"
            super().__init__(
                nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
                norm_layer(norm, out_ch),
                activation_layer(activation),
                nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias),
                norm_layer(norm, out_ch),
                activation_layer(activation),
            )

    class Upsample(nn.Module):
        """×2 up-sampling from ``in_ch`` to ``out_ch`` channels."""

        def __init__(self, in_ch: int, out_ch: int, mode: str) -> None:
            super().__init__()
            self.mode = mode
            if mode == "transpose":
                self.conv: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
            else:
                # The 1×1 convolution runs before the interpolation: both are linear
                # and bilinear weights sum to one, so the order gives the same result
                # while the convolution costs 4× less at the coarse resolution.
                self.conv = nn.Conv2d(in_ch, out_ch, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            if self.mode == "transpose":
                return x
            return functional.interpolate(
                x, scale_factor=2.0, mode="bilinear", align_corners=False
            )

    class DeepZGenerator(nn.Module):
        """U-Net that maps ``[image, DPM]`` to the refocused image."""

        def __init__(self, config: GeneratorConfig) -> None:
            super().__init__()
            self.config = config
            widths = config.widths()
            self.encoders = nn.ModuleList()
            self.downs = nn.ModuleList()
            previous = config.in_channels
            for level, width in enumerate(widths):
                self.encoders.append(
                    ConvBlock(previous, width, config.norm, config.activation)
                )
                if level < config.depth:
                    if config.downsampling == "conv":
                        self.downs.append(nn.Conv2d(width, width, 2, stride=2))
                    else:
                        self.downs.append(nn.MaxPool2d(2))
                previous = width
            self.ups = nn.ModuleList()
            self.decoders = nn.ModuleList()
            for level in reversed(range(config.depth)):
                self.ups.append(
                    Upsample(widths[level + 1], widths[level], config.upsampling)
                )
                self.decoders.append(
                    ConvBlock(
                        2 * widths[level],
                        widths[level],
                        config.norm,
                        config.activation,
                    )
                )
            self.head = nn.Conv2d(widths[0], config.out_channels, 1)
            if config.residual:
                # Start training from the identity (output = input image).
                nn.init.zeros_(self.head.weight)
                if self.head.bias is not None:
                    nn.init.zeros_(self.head.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Refocus ``(N, in_channels, H, W)``; H and W multiples of 2**depth."""
            # No int(): under torch.export the sizes stay symbolic, and the check
            # becomes a constraint on them instead of freezing one input size.
            check_input_size(self.config, x.shape[-2], x.shape[-1])
            skips = []
            features = x
            for level, encoder in enumerate(self.encoders):
                features = encoder(features)
                if level < self.config.depth:
                    skips.append(features)
                    features = self.downs[level](features)
            for up, decoder in zip(self.ups, self.decoders, strict=True):
                features = up(features)
                features = decoder(torch.cat([features, skips.pop()], dim=1))
            out = self.head(features)
            if self.config.residual:
                # Channel 0 is the image; it broadcasts over all output channels.
                out = out + x[:, :1]
            return out

    class PatchDiscriminator(nn.Module):
        """Conditional PatchGAN: one real/fake logit per image patch."""

        def __init__(self, config: DiscriminatorConfig) -> None:
            super().__init__()
            self.config = config
            layers: list[nn.Module] = []
            previous = config.in_channels
            for index in range(config.n_downsamplings):
                width = config.base_width * min(2**index, 8)
                normalised = index > 0 and config.norm != "none"
                # 4×4 kernels with stride 2 and padding 1 halve the size exactly and
                # avoid the checkerboard bias of 3×3 stride-2 kernels.
                layers.append(
                    nn.Conv2d(
                        previous, width, 4, stride=2, padding=1, bias=not normalised
                    )
                )
                if normalised:
                    layers.append(norm_layer(config.norm, width))
                layers.append(nn.LeakyReLU(_LEAKY_SLOPE, inplace=True))
                previous = width
            width = config.base_width * min(2**config.n_downsamplings, 8)
            normalised = config.norm != "none"
            layers.append(nn.Conv2d(previous, width, 3, padding=1, bias=not normalised))
            if normalised:
                layers.append(norm_layer(config.norm, width))
            layers.append(nn.LeakyReLU(_LEAKY_SLOPE, inplace=True))
            # Raw logits: the least-squares GAN loss is applied by the trainer.
            layers.append(nn.Conv2d(width, 1, 3, padding=1))
            self.layers = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Return patch logits ``(N, 1, H / 2**n, W / 2**n)``."""
            return self.layers(x)

    return {
        "DeepZGenerator": DeepZGenerator,
        "PatchDiscriminator": PatchDiscriminator,
    }


def build_generator(config: GeneratorConfig | None = None) -> nn.Module:
    """Build the Deep-Z U-Net generator.

    Parameters
    ----------
    config : GeneratorConfig, optional
        Architecture; the default is a 4-level U-Net of base width 16.

    Returns
    -------
    torch.nn.Module
        A module with a ``config`` attribute. ``forward(x)`` takes
        ``(N, in_channels, H, W)`` with channel 0 the image and channel 1 the DPM,
        and returns ``(N, out_channels, H, W)``. H and W must be multiples of
        :func:`required_multiple` (a ValueError says so otherwise).
    """
    config = GeneratorConfig() if config is None else config
    return _module_classes()["DeepZGenerator"](config)


def build_discriminator(config: DiscriminatorConfig | None = None) -> nn.Module:
    """Build the conditional PatchGAN discriminator.

    Parameters
    ----------
    config : DiscriminatorConfig, optional
        Architecture; the default has 3 stride-2 layers of base width 32.

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` takes ``(N, in_channels, H, W)`` (``[image, DPM, candidate]``)
        and returns logits of shape :func:`discriminator_output_shape`.
    """
    config = DiscriminatorConfig() if config is None else config
    return _module_classes()["PatchDiscriminator"](config)


def discriminator_output_shape(
    config: DiscriminatorConfig, height: int, width: int
) -> tuple[int, int]:
    """Return the ``(height, width)`` of the patch-logit map for an input size."""
    for _ in range(config.n_downsamplings):
        # Output size of a 4×4, stride-2, padding-1 convolution.
        height = (height + 2 - 4) // 2 + 1
        width = (width + 2 - 4) // 2 + 1
    return height, width


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Return the number of parameters of a module.

    Parameters
    ----------
    module : torch.nn.Module
        Any module.
    trainable_only : bool
        Count only parameters that require gradients.
    """
    return sum(
        parameter.numel()
        for parameter in module.parameters()
        if parameter.requires_grad or not trainable_only
    )


def estimate_gflops(config: GeneratorConfig, height: int, width: int) -> float:
    """Estimate the cost of one generator forward pass, in GFLOP.

    Counts two operations (a multiply and an add) per multiply-accumulate of every
    convolution. Normalisation, activations, pooling, interpolation and biases are
    left out: together they are a few percent and cost memory bandwidth rather than
    arithmetic.

    Parameters
    ----------
    config : GeneratorConfig
        Architecture.
    height, width : int
        Input size; must be multiples of :func:`required_multiple`.

    Returns
    -------
    float
        Billions of floating-point operations per image (batch of one).
    """
    check_input_size(config, height, width)
    widths = config.widths()
    macs = 0
    previous = config.in_channels
    for level, channels in enumerate(widths):
        pixels = (height >> level) * (width >> level)
        # Encoder block: two 3×3 convolutions.
        macs += pixels * 9 * (previous * channels + channels * channels)
        if level < config.depth and config.downsampling == "conv":
            macs += (pixels // 4) * 4 * channels * channels
        previous = channels
    for level in range(config.depth):
        pixels = (height >> level) * (width >> level)
        fine, coarse = widths[level], widths[level + 1]
        if config.upsampling == "transpose":
            # Each coarse pixel scatters a 2×2×fine patch: one MAC per fine pixel
            # and channel pair.
            macs += pixels * coarse * fine
        else:
            # The 1×1 convolution runs at the coarse resolution.
            macs += (pixels // 4) * coarse * fine
        # Decoder block: 3×3 on the concatenation (2 × fine), then 3×3 fine → fine.
        macs += pixels * 9 * (2 * fine * fine + fine * fine)
    macs += height * width * widths[0] * config.out_channels
    return 2 * macs / 1e9
