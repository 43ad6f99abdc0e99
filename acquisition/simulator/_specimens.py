"""Simulated fluorescent specimens: geometry, brightness, activity and bleaching.

Coordinates: ``x``, ``y`` in µm in the sample plane, relative to the optical axis (the
centre of the full sensor); ``depth`` in µm below the coverslip surface (≥ 0).

Brightness is counted in fluorophores. A fluorophore emits
`EMISSION_RATE_PER_W_CM2` photons per second per W/cm² of excitation (EGFP-like:
ε = 56 000 M⁻¹ cm⁻¹ at 488 nm, quantum yield 0.60; Tsien, Annu. Rev. Biochem. 67, 509,
1998), far below saturation at the irradiances used for live imaging.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal

if TYPE_CHECKING:
    from collections.abc import Callable

_AVOGADRO = 6.02214076e23
_H_C = 6.62607015e-34 * 2.99792458e8  # J·m
_EXTINCTION_M_CM = 56_000.0
_QUANTUM_YIELD = 0.60
_EXCITATION_M = 488e-9
#: absorption cross-section (cm²) from the molar extinction coefficient
ABSORPTION_CROSS_SECTION_CM2 = 1000 * np.log(10) * _EXTINCTION_M_CM / _AVOGADRO
#: photons emitted per second per fluorophore per W/cm² of excitation
EMISSION_RATE_PER_W_CM2 = (
    ABSORPTION_CROSS_SECTION_CM2 * _EXCITATION_M / _H_C * _QUANTUM_YIELD
)

KINDS = ("worm", "beads", "single-bead", "tilted-sheet", "curved-sheet")


@dataclass(frozen=True)
class Emitters:
    """Round fluorescent objects: points (radius 0) or uniform solid spheres."""

    x_um: np.ndarray
    y_um: np.ndarray
    depth_um: np.ndarray
    radius_um: np.ndarray
    fluorophores: np.ndarray

    def __len__(self) -> int:
        return int(self.x_um.size)


@dataclass(frozen=True)
class Sheet:
    """A thin fluorescent layer whose depth varies over the field.

    ``depth_um(x, y)`` gives the layer's depth; ``texture(x, y)`` its fluorophores per
    µm² (a thin sample with structure: a uniform plane would look the same at every
    focus, since widefield defocus conserves energy).
    """

    depth_at: Callable[[np.ndarray, np.ndarray], np.ndarray]
    texture_at: Callable[[np.ndarray, np.ndarray], np.ndarray]
    thickness_um: float


@dataclass
class Specimen:
    """A specimen: emitters and/or a sheet, plus time-dependent activity.

    Use `make_specimen` to build one of the standard kinds.
    """

    kind: str
    seed: int
    centre_depth_um: float
    emitters: Emitters | None = None
    sheet: Sheet | None = None
    activity: CalciumActivity | None = None
    notes: dict[str, float] = field(default_factory=dict)

    def brightness_factor(self, t_s: float) -> np.ndarray | None:
        """Per-emitter multiplicative brightness (1 + ΔF/F) at time ``t_s``."""
        if self.activity is None:
            return None
        return 1.0 + self.activity.dff(np.array([t_s]))[0]


# --------------------------------------------------------------------- activity
# a chunk's start: the random generator's state, then the latent, rise and decay
# filters' states
_ChunkStart = tuple[Mapping[str, Any], np.ndarray, np.ndarray, np.ndarray]


class CalciumActivity:
    """GCaMP-like activity of N neurons driven by a few slow shared latent signals.

    Latent signals are Ornstein-Uhlenbeck processes (time constant ``latent_tau_s``);
    each neuron fires calcium events as an inhomogeneous Poisson process whose rate is a
    sigmoid of its weighted latents; each event adds a transient with exponential rise
    (``rise_s``) and decay (``decay_s``) to ΔF/F. Whole-brain worm activity is slow and
    low-dimensional (Kato et al., Cell 163, 656, 2015), which this reproduces.

    Everything is deterministic for a seed, evaluated on a ``dt_s`` grid that is
    extended on demand, and reachable as ground truth through `dff`. The grid is made
    in chunks of ``chunk_s``; only the generator's state at each chunk's start is
    kept (a few kB), and a past chunk is made again from it when asked for, so a run
    of any length holds at most ``_CACHED_CHUNKS`` chunks of traces in memory
    (keeping every step of 180 neurons would grow by ~17 MiB a minute).
    """

    _CACHED_CHUNKS = 2

    def __init__(
        self,
        n_neurons: int,
        seed: int,
        *,
        n_latents: int = 3,
        latent_tau_s: float = 4.0,
        rise_s: float = 0.1,
        decay_s: float = 0.5,
        max_rate_hz: float = 2.0,
        event_amplitude: float = 0.6,
        dt_s: float = 0.005,
        chunk_s: float = 60.0,
    ) -> None:
        self.n_neurons = n_neurons
        self.rise_s, self.decay_s = rise_s, decay_s
        self.dt_s = dt_s
        self._chunk = round(chunk_s / dt_s)
        self._rng = np.random.default_rng([seed, 0xCA])
        self._latent_tau = latent_tau_s
        self._max_rate = max_rate_hz
        self._amplitude = event_amplitude
        self.weights = self._rng.normal(0, 1.5, (n_neurons, n_latents))
        self.bias = self._rng.normal(-1.5, 0.7, n_neurons)
        self._latent = np.zeros(n_latents)
        self._lat_zi = self._rng.normal(0, 1, (1, n_latents))
        self._rise_zi = np.zeros((1, n_neurons))
        self._decay_zi = np.zeros((1, n_neurons))
        # where each chunk starts: the generator's state and the filters' states
        self._starts: list[_ChunkStart] = []
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        tr, td = rise_s, decay_s
        t_peak = np.log(td / tr) * td * tr / (td - tr)
        self._peak = np.exp(-t_peak / td) - np.exp(-t_peak / tr)

    def _state(self) -> _ChunkStart:
        return (
            self._rng.bit_generator.state,
            self._lat_zi.copy(),
            self._rise_zi.copy(),
            self._decay_zi.copy(),
        )

    def _set_state(self, state: _ChunkStart) -> None:
        rng_state, lat_zi, rise_zi, decay_zi = state
        self._rng.bit_generator.state = rng_state
        self._lat_zi, self._rise_zi, self._decay_zi = lat_zi, rise_zi, decay_zi

    def _chunk_trace(self, index: int) -> np.ndarray:
        """ΔF/F of chunk ``index``, (chunk steps, N): made (again) if not cached."""
        while len(self._starts) <= index:  # chunks never made: in order
            self._starts.append(self._state())
            self._remember(len(self._starts) - 1, self._extend(self._chunk))
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        # a chunk made before and dropped from the cache: the same again
        live = self._state()  # the generator's state for the next new chunk
        self._set_state(self._starts[index])
        trace = self._extend(self._chunk)
        self._set_state(live)
        self._remember(index, trace)
        return trace

    def _remember(self, index: int, trace: np.ndarray) -> None:
        self._cache[index] = trace
        while len(self._cache) > self._CACHED_CHUNKS:
            self._cache.popitem(last=False)

    def _extend(self, n_steps: int) -> np.ndarray:
        rng, dt = self._rng, self.dt_s
        # latent OU processes: x[i] = a x[i-1] + sqrt(1 - a²) ξ[i]
        a_lat = np.exp(-dt / self._latent_tau)
        noise = rng.standard_normal((n_steps, self._latent.size)) * np.sqrt(
            1 - a_lat**2
        )
        latents, self._lat_zi = signal.lfilter(
            [1.0], [1.0, -a_lat], noise, axis=0, zi=self._lat_zi
        )
        drive = latents @ self.weights.T + self.bias
        rate = self._max_rate / (1 + np.exp(-drive))
        events = (rng.random(rate.shape) < rate * dt) * self._amplitude
        # each event adds A (exp(-t/decay) - exp(-t/rise)) / peak: a GCaMP transient
        a_rise, a_decay = np.exp(-dt / self.rise_s), np.exp(-dt / self.decay_s)
        slow, self._decay_zi = signal.lfilter(
            [1.0], [1.0, -a_decay], events, axis=0, zi=self._decay_zi
        )
        fast, self._rise_zi = signal.lfilter(
            [1.0], [1.0, -a_rise], events, axis=0, zi=self._rise_zi
        )
        return (slow - fast) / self._peak

    def dff(self, t_s: np.ndarray) -> np.ndarray:
        """ΔF/F of every neuron at times ``t_s`` (s, ≥ 0) -> shape (T, N)."""
        t = np.clip(np.atleast_1d(np.asarray(t_s, float)), 0, None)
        idx = t / self.dt_s
        lo = np.floor(idx).astype(int)
        frac = (idx - lo)[:, None]
        return self._rows(lo) * (1 - frac) + self._rows(lo + 1) * frac

    def _rows(self, steps: np.ndarray) -> np.ndarray:
        """The trace at grid ``steps`` (any order), (len(steps), N)."""
        rows = np.empty((steps.size, self.n_neurons))
        chunk, offset = np.divmod(steps, self._chunk)
        for index in np.unique(chunk):
            where = chunk == index
            rows[where] = self._chunk_trace(int(index))[offset[where]]
        return rows


# --------------------------------------------------------------------- geometries
def _field_half_width_um() -> float:
    # a 512-pixel sensor at 0.325 µm: emitters fill the default field of view
    return 512 * 0.325 / 2


#: the single bead sits at the centre of pixel (256, 256) of the default 512² frame
#: (half a 0.325 µm pixel off the optical axis), so PSF checks align with pixel grids
SINGLE_BEAD_XY_UM = 0.1625


def _single_bead(seed: int, depth_um: float) -> Specimen:
    em = Emitters(
        x_um=np.array([SINGLE_BEAD_XY_UM]),
        y_um=np.array([SINGLE_BEAD_XY_UM]),
        depth_um=np.array([depth_um]),
        radius_um=np.zeros(1),
        fluorophores=np.array([30_000.0]),
    )
    return Specimen("single-bead", seed, depth_um, emitters=em)


def _beads(seed: int, depth_um: float) -> Specimen:
    rng = np.random.default_rng([seed, 0xBE])
    n = 200
    half = _field_half_width_um()
    em = Emitters(
        x_um=rng.uniform(-half, half, n),
        y_um=rng.uniform(-half, half, n),
        depth_um=np.clip(depth_um + rng.uniform(-8, 8, n), 0, None),
        radius_um=np.zeros(n),  # 100-200 nm beads are points at this resolution
        fluorophores=30_000.0 * rng.lognormal(0, 0.2, n),
    )
    return Specimen("beads", seed, depth_um, emitters=em)


def _worm(seed: int, depth_um: float, n_neurons: int = 180) -> Specimen:
    """Nuclei of a C. elegans-like head lying on its side.

    The head is a tapered, gently bent tube ~130 µm long; nuclei (2-3 µm across,
    Ø ~2.5 µm) pack densely around the nerve ring and thin out towards the nose and
    the back, spread over about ±10 µm in depth around ``depth_um``.
    """
    rng = np.random.default_rng([seed, 0x3E])
    length = 130.0
    bend = rng.uniform(-8, 8)
    angle = rng.uniform(-0.4, 0.4)
    xs: list[float] = []
    ys: list[float] = []
    zs: list[float] = []
    rs: list[float] = []
    attempts = 0
    while len(xs) < n_neurons and attempts < 200_000:
        attempts += 1
        s = rng.uniform(-0.5, 0.5)  # along the body
        # density: nerve ring near s = 0.1, fewer towards the tips
        if rng.random() > np.exp(-(((s - 0.1) / 0.3) ** 2)):
            continue
        radius_body = 6.0 + 8.0 * (s + 0.5)  # thin nose (s = -0.5) to wider back
        radius_body = min(radius_body, 11.0)
        u, v = rng.uniform(-1, 1, 2)
        if u * u + v * v > 1:
            continue
        x_c = s * length
        y_c = bend * np.cos(np.pi * s)
        pos = (x_c, y_c + u * radius_body, v * radius_body)
        r_nuc = rng.uniform(1.0, 1.5)
        if xs:
            d2 = (
                (np.array(xs) - pos[0]) ** 2
                + (np.array(ys) - pos[1]) ** 2
                + (np.array(zs) - pos[2]) ** 2
            )
            if np.any(d2 < (r_nuc + np.array(rs) + 0.3) ** 2):
                continue
        xs.append(pos[0])
        ys.append(pos[1])
        zs.append(pos[2])
        rs.append(r_nuc)
    x, y = np.array(xs), np.array(ys)
    ca, sa = np.cos(angle), np.sin(angle)
    em = Emitters(
        x_um=ca * x - sa * y,
        y_um=sa * x + ca * y,
        depth_um=np.clip(depth_um + np.array(zs), 0.5, None),
        radius_um=np.array(rs),
        fluorophores=60_000.0 * rng.lognormal(0, 0.25, len(xs)),
    )
    activity = CalciumActivity(len(xs), seed)
    return Specimen("worm", seed, depth_um, emitters=em, activity=activity)


def _texture(seed: int):
    """A smooth random fluorescent pattern, feature size ~1.5 µm, fluorophores/µm²."""
    rng = np.random.default_rng([seed, 0x7E])
    n_waves = 64
    freqs = rng.uniform(0.15, 0.6, n_waves)  # cycles per µm
    theta = rng.uniform(0, 2 * np.pi, n_waves)
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    kx, ky = freqs * np.cos(theta), freqs * np.sin(theta)

    def texture_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        acc = np.zeros(np.broadcast(x, y).shape)
        for i in range(n_waves):
            acc += np.cos(2 * np.pi * (kx[i] * x + ky[i] * y) + phase[i])
        acc /= np.sqrt(n_waves / 2)
        return 2_000.0 * np.exp(0.8 * acc - 0.32)  # log-normal patches, mean ~2000

    return texture_at


def _tilted_sheet(seed: int, depth_um: float, tilt_deg: float = 3.0) -> Specimen:
    slope = np.tan(np.deg2rad(tilt_deg))

    def depth_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return depth_um + slope * np.asarray(x) + 0 * np.asarray(y)

    sheet = Sheet(depth_at=depth_at, texture_at=_texture(seed), thickness_um=0.3)
    return Specimen(
        "tilted-sheet", seed, depth_um, sheet=sheet, notes={"tilt_deg": tilt_deg}
    )


def _curved_sheet(seed: int, depth_um: float, sag_um: float = 6.0) -> Specimen:
    half = _field_half_width_um()

    def depth_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r2 = (np.asarray(x) ** 2 + np.asarray(y) ** 2) / half**2
        return depth_um - sag_um / 2 + sag_um * r2 / 2  # a dome, ±sag/2 around depth

    sheet = Sheet(depth_at=depth_at, texture_at=_texture(seed), thickness_um=0.3)
    return Specimen(
        "curved-sheet", seed, depth_um, sheet=sheet, notes={"sag_um": sag_um}
    )


DEFAULT_DEPTH_UM = {
    "worm": 12.0,
    "beads": 10.0,
    "single-bead": 0.0,
    "tilted-sheet": 10.0,
    "curved-sheet": 10.0,
}


def make_specimen(kind: str, seed: int = 0, depth_um: float | None = None) -> Specimen:
    """Build a standard specimen.

    Parameters
    ----------
    kind : str
        One of `KINDS`.
    seed : int
        Makes geometry, brightness and activity reproducible.
    depth_um : float, optional
        Depth of the specimen's centre below the coverslip; each kind has a default.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown specimen kind {kind!r}; choose one of {KINDS}.")
    depth = DEFAULT_DEPTH_UM[kind] if depth_um is None else float(depth_um)
    if depth < 0:
        raise ValueError(
            f"Specimen depth must be ≥ 0 µm below the coverslip, got {depth}"
        )
    builders = {
        "worm": _worm,
        "beads": _beads,
        "single-bead": _single_bead,
        "tilted-sheet": _tilted_sheet,
        "curved-sheet": _curved_sheet,
    }
    return builders[kind](seed, depth)
