"""The image codec: photo -> .bac bytes -> photo (SPEC.md §8-§10).

    compress:   x --g_a--> (mu, sigma) --VBQ(lam)--> (depth, index)
                  --entropy model + range coder--> payload --header--> .bac
    decompress: .bac --header--> payload --range decoder--> (depth, index)
                  --F^-1 table--> zhat (bit-exact) --g_s--> x_hat --round--> pixels

The encoder's one decision per latent is VBQ (SPEC.md §5; the objective of
Yang, Bamler & Mandt 2020 for a Gaussian posterior, constants dropped):

    (depth, index) = argmax  -((zhat - mu) / sigma)^2 / 2  -  lam * depth,
                     zhat = F^-1((2 index + 1) / 2^(depth + 1))        (SPEC.md §4.2)

By default the encoder then runs the paper's **second pass** (SPEC.md §5.4):
it counts how often each depth occurs per channel in that first result and
quantizes again with depth replaced by the code length r - log2 f_c(r), so
common depths get cheaper; it does so three times, each round counting the
depths of the round before (the paper's code runs one round).  The decoder
is the same either way (the header flag is informational); on Kodak the
second pass saves about 21 % of the bits at equal PSNR (README,
"Rate-distortion").  ``second_pass=False`` gives the plain first pass, the
objective above.

Then the **context pass** (SPEC.md §5.6, bac_ref 1.1): the entropy model codes
a depth with the adaptive model of its context (the neighbours' depths,
SPEC.md §9.2), so a depth that fits its neighbours costs fewer bits than its
channel's frequency says.  Two sweeps re-choose every depth with its bits
priced that way, the neighbours' contexts included: 4-5 % fewer bytes at
equal PSNR on validation images.  ``context_pass=False`` skips it.  Both
passes only change which symbols the encoder picks: the format and the
decoder are the same with or without them.

Size and quality: bpp = 8 len(.bac) / (H W), header included; PSNR =
10 log10(255^2 / MSE) on the 8-bit pixels of SPEC.md §10.

lambda is the only rate knob and is chosen here, at compression time; one
trained model serves every rate (the paper's central claim).  ``bpp=`` and
``psnr=`` search lambda for a target; ``lam`` may also be an array (a
per-latent lambda map, e.g. :func:`lambda_map_from_mask` for region-of-
interest coding).  Only the encoder ever sees lambda: the decoder needs the
file and the model, nothing else.

The API, top to bottom:

    compress(image, lam) -> bytes             decompress(data) -> uint8 pixels
    compress_details(...) -> Encoded          decompress_details(data) -> Decoded
    Encoder(image): g_a once, then .symbols(lam) / .rate(q) / .quality(q) / .encode(lam)
                    for any number of lambdas (rate searches, benchmarks)

Large images run g_a and g_s in strips (:mod:`bac_ref.tiling`) and VBQ in
groups of channels, so a 12-megapixel photo needs a few hundred MB; the
bytes are the same as for the whole image.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import bitstream, entropy_model, tiling, vbq
from .g_a import DOWNSAMPLING
from .errors import BitstreamError, ModelFileError
from .imageio import ImageData, read_image
from .metrics import psnr, psnr_from_sse, sse_uint8  # noqa: F401  (codec.psnr is public API)

DEFAULT_MAX_DEPTH = 10
MAX_DECODE_PIXELS = 1 << 25         # default decoder limit (SPEC.md §8, memory bombs)
GROUP_LATENTS = 1 << 19             # VBQ runs on groups of channels of at most this many latents
CANDIDATE_GROUP_LATENTS = 1 << 17   # ... and vbq.Candidates (larger tables) on groups of these


# ---------------------------------------------------------------------------
# Models and priors
# ---------------------------------------------------------------------------
_MODEL_CACHE: dict = {}


def get_model(model=None):
    """A loaded model: pass-through for Model objects, else load (cached by path/name)."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model
    from .model import load_model
    key = os.fspath(model) if model is not None else None
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_model(model)
    return _MODEL_CACHE[key]


def model_prior(model):
    """The coding prior stored in the model file (SPEC.md §4.5, §6.1)."""
    cached = getattr(model, "_bac_prior", None)
    if cached is not None:
        return cached
    from .priors import QuantilePrior
    arrays = model.arrays_extra
    if not any(k.startswith("prior.") for k in arrays):
        raise ModelFileError(f"{model.path}: the model file has no coding prior (prior.* arrays)")
    try:
        prior = QuantilePrior.from_arrays(arrays, prefix="prior.")
    except Exception as exc:    # noqa: BLE001 -- a corrupted or unknown prior: the file's fault
        raise ModelFileError(f"{model.path}: invalid coding prior: {exc}") from exc
    if prior.num_channels != model.M:
        raise ModelFileError(f"{model.path}: prior has {prior.num_channels} channels, "
                             f"the model {model.M}")
    try:
        object.__setattr__(model, "_bac_prior", prior)
    except (AttributeError, TypeError):
        pass
    return prior


def model_id_bytes(model) -> bytes:
    """The 8-byte model id of the header: the first 8 bytes of the file's sha256."""
    return bytes.fromhex(model.model_id)[:8]


# ---------------------------------------------------------------------------
# The pipeline, one screen per direction
# ---------------------------------------------------------------------------
def compress_details(image, lam=None, *, bpp=None, psnr=None, model=None,
                     max_depth=DEFAULT_MAX_DEPTH, second_pass=True, context_pass=True,
                     progress=None, measure_psnr=False) -> Encoded:
    """Compress and return the bytes with the symbols and lambda used.

    Exactly one of ``lam`` (a number >= 0, or an array broadcastable to the
    (M, h, w) latents: a lambda map), ``bpp`` (a target size in bits per
    pixel: within 2 % when the model can reach it) or ``psnr`` (a target PSNR
    in dB on the 8-bit pixels: the smallest file that reaches it, within
    0.05 dB).  A target beyond the model's reach gives the closest file, and
    never a file larger than the one where the quality stops rising (within
    0.1 dB of the best the model can do on this image): ``Encoded.note`` then
    says so (:mod:`bac_ref.ratecontrol`).  ``second_pass=False`` skips the
    paper's second pass (SPEC.md §5.4), ``context_pass=False`` the context pass
    (SPEC.md §5.6).  ``progress(message)`` hears about
    long work (strips, search steps).  ``measure_psnr=True`` fills ``Encoded.psnr``
    (one g_s; a ``psnr`` target has measured it already).
    """
    _check_options(lam, bpp, psnr, max_depth)
    enc = Encoder(image, model, int(max_depth), progress=progress)    # g_a: x -> (mu, sigma)
    if lam is not None:
        out = enc.encode(lam, second_pass, context_pass=context_pass)  # VBQ, coding, header
    else:                                                # a target: search lambda first
        from . import ratecontrol
        search = ratecontrol.encode_for_bpp if bpp is not None else ratecontrol.encode_for_psnr
        out = search(enc, float(bpp if bpp is not None else psnr), second_pass, progress,
                     context_pass=context_pass)
    if measure_psnr and out.psnr is None:                # what the decoder's pixels will score
        t0 = time.perf_counter()
        out.psnr = enc.quality(out.zhat)
        out.times["PSNR (g_s)"] = time.perf_counter() - t0
    return out


def compress(image, lam=None, *, bpp=None, psnr=None, model=None,
             max_depth=DEFAULT_MAX_DEPTH, second_pass=True, context_pass=True) -> bytes:
    """Compress an image (path, ImageData or array) to .bac bytes (SPEC.md §8)."""
    return compress_details(image, lam, bpp=bpp, psnr=psnr, model=model, max_depth=max_depth,
                            second_pass=second_pass, context_pass=context_pass).data


def decompress_details(data: bytes, model=None, synthesize: bool = True,
                       max_pixels: int = MAX_DECODE_PIXELS, progress=None) -> Decoded:
    """Decode .bac bytes: header, symbols, zhat and (unless ``synthesize=False``) pixels."""
    model = get_model(model)
    t0 = time.perf_counter()
    header, depth, index, zhat = decode_symbols(data, model, max_pixels)  # range decoder, F^-1
    t1 = time.perf_counter()
    pixels = None
    if synthesize:                                       # g_s, then SPEC.md §10's rounding
        pixels = reconstruct(model, zhat, (header.height, header.width), header.grey, progress)
    times = {"entropy decoding + F^-1": t1 - t0}
    if synthesize:
        times["g_s + rounding"] = time.perf_counter() - t1
    return Decoded(header, depth, index, zhat, pixels, times)


def decompress(data: bytes, model=None, max_pixels: int = MAX_DECODE_PIXELS) -> np.ndarray:
    """Decode .bac bytes to a uint8 image, (H, W, 3) RGB or (H, W) grey (SPEC.md §10)."""
    return decompress_details(data, model, max_pixels=max_pixels).pixels


def _check_max_depth(max_depth) -> int:
    if not (isinstance(max_depth, (int, np.integer)) and not isinstance(max_depth, bool)
            and 1 <= max_depth <= bitstream.MAX_DEPTH_LIMIT):
        raise ValueError(f"max_depth must be an integer in 1..{bitstream.MAX_DEPTH_LIMIT}")
    return int(max_depth)


def _check_lam(lam) -> None:
    arr = np.asarray(lam, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise ValueError(f"lambda must be finite and >= 0 (got {lam!r})")


def _check_options(lam, bpp, psnr, max_depth):
    if sum(v is not None for v in (lam, bpp, psnr)) != 1:
        raise ValueError("give exactly one of lam=, bpp= or psnr=")
    _check_max_depth(max_depth)
    if lam is not None:
        _check_lam(lam)
    if bpp is not None and not (bpp > 0 and math.isfinite(bpp)):
        raise ValueError(f"bpp must be a positive number (got {bpp!r})")
    if psnr is not None and not (psnr > 0 and math.isfinite(psnr)):
        raise ValueError(f"psnr must be a positive number (got {psnr!r})")


# ---------------------------------------------------------------------------
# Input images
# ---------------------------------------------------------------------------
class ImageSource:
    """An input image kept as stored (uint8, uint16 or float32), read as float rows on demand.

    ``rows(r0, r1)`` gives pixel rows r0..r1-1 as (3, r1 - r0, W) float32 in [0, 1]:
    8-bit samples / 255, 16-bit / 65535 (one correctly rounded float32 division, as
    :func:`bac_ref.imageio.to_rgb_float`), grey replicated, alpha dropped.  g_a reads
    the image strip by strip through it, so the whole float image never exists.
    """

    def __init__(self, image):
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image)
        if isinstance(image, ImageData):
            grey = image.mode in ("L", "LA")
            if image.float_pixels is not None:
                arr, scale = image.float_pixels, None
            else:
                arr, scale = image.pixels, np.float32(255.0 if image.bit_depth == 8 else 65535.0)
        else:
            arr = np.asarray(image)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            if (arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.shape[0] < 1
                    or arr.shape[1] < 1):
                raise ValueError(f"an image must be (H, W) or (H, W, 1|2|3|4); got shape "
                                 f"{arr.shape}")
            grey = arr.shape[2] in (1, 2)
            if arr.dtype == np.uint8:
                scale = np.float32(255)
            elif arr.dtype == np.uint16:
                scale = np.float32(65535)
            elif np.issubdtype(arr.dtype, np.floating):
                if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
                    raise ValueError("float images must be finite and lie in [0, 1]")
                scale = None
            else:
                raise ValueError(f"unsupported image dtype {arr.dtype} (use uint8, uint16 or "
                                 "float)")
        self.pixels_stored = arr[:, :, :1] if grey else arr[:, :, :3]     # (H, W, 1 or 3)
        self.scale = scale
        self.grey = grey
        self.height, self.width = arr.shape[:2]

    def rows(self, r0: int, r1: int) -> np.ndarray:
        x = self.pixels_stored[r0:r1]                                     # (n, W, C)
        x = x.astype(np.float32) / self.scale if self.scale is not None else x.astype(np.float32)
        if self.grey:
            x = np.repeat(x, 3, axis=2)                                   # (n, W, 3)
        return np.ascontiguousarray(x.transpose(2, 0, 1))                 # (3, n, W)


def as_float_image(image):
    """(H, W, 3) float32 in [0, 1] and a grey flag, from a path, ImageData or array.

    Arrays: uint8 / uint16 (scaled by 255 / 65535) or float in [0, 1]; shape
    (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha is ignored).
    """
    src = ImageSource(image)
    return np.ascontiguousarray(src.rows(0, src.height).transpose(1, 2, 0)), src.grey


def to_pixels(x_hat: np.ndarray, grey: bool) -> np.ndarray:
    """SPEC.md §10, in float32: clip to [0, 1], times 255, round half to even; grey = channel mean."""
    x_hat = np.asarray(x_hat, dtype=np.float32)
    if grey:
        x_hat = x_hat.mean(axis=2, dtype=np.float32)
    if not np.all(np.isfinite(x_hat)):
        raise ValueError("the reconstruction holds NaN or infinite values")
    return np.rint(np.clip(x_hat, np.float32(0), np.float32(1)) * np.float32(255)).astype(np.uint8)


def reference_pixels(image) -> np.ndarray:
    """The input as 8-bit pixels the way the decoder's are made (SPEC.md §10): what PSNR
    compares with.  (H, W, 3) or (H, W) uint8; converted strip by strip."""
    src = image if isinstance(image, ImageSource) else ImageSource(image)
    out = np.empty((src.height, src.width) + (() if src.grey else (3,)), dtype=np.uint8)
    step = max(1, tiling.STRIP_PIXELS // src.width)
    for r0 in range(0, src.height, step):
        r1 = min(r0 + step, src.height)
        out[r0:r1] = to_pixels(src.rows(r0, r1).transpose(1, 2, 0), src.grey)
    return out


def reconstruct_strips(model, zhat: np.ndarray, size, grey: bool):
    """g_s and SPEC.md §10 strip by strip: yields (r0, r1, uint8 pixel rows r0..r1-1)."""
    z = np.asarray(zhat).astype(np.float32)                               # (M, h, w)
    for r0, r1, y in tiling.synthesis(model.params, z, tuple(size)):      # (3, rows, W)
        yield r0, r1, to_pixels(y.transpose(1, 2, 0), grey)


def reconstruct(model, zhat: np.ndarray, size, grey: bool, progress=None) -> np.ndarray:
    """The decoded pixels of zhat: (H, W, 3) or (H, W) uint8 (g_s, then SPEC.md §10)."""
    height, width = size
    out = np.empty((height, width) if grey else (height, width, 3), dtype=np.uint8)
    n = len(tiling.strips(-(-height // DOWNSAMPLING), -(-width // DOWNSAMPLING)))
    for i, (r0, r1, px) in enumerate(reconstruct_strips(model, zhat, size, grey)):
        out[r0:r1] = px
        if progress is not None and n > 1:
            progress(f"synthesis: strip {i + 1}/{n}")
    return out


# ---------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------
@dataclass
class Encoded:
    """Everything the encoder produced (returned by :func:`compress_details`)."""
    data: bytes
    header: bitstream.Header
    depth: np.ndarray             # (M, h, w) int64
    index: np.ndarray             # (M, h, w) int64
    zhat: np.ndarray              # (M, h, w) float64, bit-identical to the decoder's
    lam: object
    psnr: float | None = None     # PSNR of the decoded pixels, when the encoder measured it
    note: str | None = None       # why a bpp / psnr target was not met, if it was not
    times: dict = field(default_factory=dict)   # seconds per stage (g_a, VBQ, coding, search)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.header.height * self.header.width)


class Encoder:
    """The encoder of one image: the posterior once, then any number of lambdas.

        enc = Encoder(image, model)       g_a: x -> posterior (mu, sigma), each (M, h, w)
        q = enc.symbols(lam)              VBQ: grid points (depth, index) and zhat, not coded
        enc.rate(q)                       the ideal code length in bpp (no range coding)
        enc.quality(q)                    PSNR of the pixels the decoder would produce
        enc.encode(lam) -> Encoded        symbols -> entropy model + range coder -> .bac

    Rate searches (:mod:`bac_ref.ratecontrol`) and the benchmarks call
    ``symbols`` / ``rate`` / ``quality`` for many lambdas and ``encode`` once.
    ``progress(message)`` hears about the strips of g_a on large images.
    """

    def __init__(self, image, model=None, max_depth: int = DEFAULT_MAX_DEPTH, progress=None,
                 strip_rows: int | None = None):
        self.model = get_model(model)
        self.source = ImageSource(image)
        self.grey = self.source.grey
        self.height, self.width = self.source.height, self.source.width
        if not (self.height <= 65536 and self.width <= 65536
                and self.height * self.width <= bitstream.MAX_PIXELS):
            raise ValueError(f"image of {self.height}x{self.width} pixels is larger than "
                             f"the format allows (SPEC.md §8)")
        self.max_depth = _check_max_depth(max_depth)
        self.prior = model_prior(self.model)
        report = None
        if progress is not None:
            def report(i, n):
                if n > 1:
                    progress(f"analysis: strip {i}/{n}")
        t0 = time.perf_counter()
        self.mu, self.sigma = tiling.analysis(self.model.params, self.source.rows, self.height,
                                              self.width, strip_rows, report)  # (M, h, w) f32
        self.times = {"g_a": time.perf_counter() - t0}
        self._set_latents(self.mu, self.sigma)

    @classmethod
    def from_latents(cls, mu, sigma, height, width, grey=False, model=None,
                     max_depth=DEFAULT_MAX_DEPTH, prior=None) -> "Encoder":
        """The encoder of given latents (M, h, w): everything after g_a.

        The exact part of the encoder (SPEC.md §5, §8, §9): the conformance
        suite's array cases enter here.  ``prior`` defaults to the model's
        (SPEC.md §10); (height, width) is the image size the header records
        (ceil(H/16) = h, ceil(W/16) = w).  There is no image, so ``pixels`` and
        ``quality`` are unavailable.
        """
        self = cls.__new__(cls)
        self.model = get_model(model)
        self.source, self.grey = None, bool(grey)
        self.height, self.width = int(height), int(width)
        self.max_depth = _check_max_depth(max_depth)
        mu = np.asarray(mu, dtype=np.float64)
        sigma = np.asarray(sigma, dtype=np.float64)
        if mu.ndim != 3 or mu.shape[0] != self.model.M:
            raise ValueError(f"mu must be (M, h, w) with M = {self.model.M}, got {mu.shape}")
        if sigma.shape != mu.shape:
            raise ValueError(f"sigma {sigma.shape} must have mu's shape {mu.shape}")
        if mu.shape[1:] != (-(-self.height // DOWNSAMPLING), -(-self.width // DOWNSAMPLING)):
            raise ValueError(f"mu {mu.shape} does not match an image of "
                             f"{self.height}x{self.width}")
        self.prior = model_prior(self.model) if prior is None else prior
        self.times = {}
        self._set_latents(mu, sigma)
        return self

    def _set_latents(self, mu, sigma):
        self.mu, self.sigma = mu, sigma                                   # (M, h, w)
        self._groups = self._channel_groups(GROUP_LATENTS)
        self._priors = {}
        self._pixels = None
        self._candidates = None                   # (mu, sigma, vbq.Candidates), on first use

    def _channel_groups(self, latents: int) -> list:
        """(c0, c1): consecutive channels, at most ``latents`` latents (or one channel) each."""
        m, h, w = self.mu.shape
        step = max(1, latents // (h * w))
        return [(c, min(c + step, m)) for c in range(0, m, step)]

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def _group_prior(self, c0, c1):
        if (c0, c1) == (0, self.mu.shape[0]) or self.prior.table.shape[0] == 1:
            return self.prior                   # a one-channel prior serves every channel
        if (c0, c1) not in self._priors:
            from .priors import QuantilePrior
            self._priors[(c0, c1)] = QuantilePrior(self.prior.table[c0:c1])
        return self._priors[(c0, c1)]

    def quantize(self, lam, code_length=None) -> vbq.Quantized:
        """The plain first pass of VBQ (SPEC.md §5) at ``lam`` over all channels at once."""
        return vbq.quantize(self.mu.astype(np.float64), self.sigma.astype(np.float64), lam,
                            self.prior, self.max_depth, code_length=code_length, axis=0)

    def symbols(self, lam, second_pass: bool = True, context_pass: bool = True) -> vbq.Quantized:
        """VBQ at ``lam``: the first pass, then (by default) the second (SPEC.md §5.4) and
        the context pass (SPEC.md §5.6, vbq.CONTEXT_SWEEPS sweeps).

        Runs on groups of channels (every rule of §5 is per latent or per channel, so the
        result is the same as on all channels at once; a group bounds the memory).  The
        context pass's table counts all channels, so it is made between the second pass
        and the context pass, from every group's depths.
        """
        sweeps = vbq.CONTEXT_SWEEPS if context_pass else 0
        _check_lam(lam)
        lam_arr = np.asarray(lam, dtype=np.float64)
        if lam_arr.ndim == 0 and len(self._groups) == 1:
            # One group (up to GROUP_LATENTS latents): VBQ's lambda-independent half once per
            # image (about 110 bytes a latent), then each lambda costs a fraction of a run.
            # (Kept with the arrays it was made from: a caller that swaps mu or sigma, as
            # the benchmark's blind quantizer does on a copy, gets a fresh one.)
            cached = self._candidates
            if cached is None or cached[0] is not self.mu or cached[1] is not self.sigma:
                cached = self._candidates = (self.mu, self.sigma, vbq.Candidates(
                    self.mu, self.sigma, self.prior, self.max_depth))
            return cached[2].symbols(float(lam_arr), second_pass, context_sweeps=sweeps)
        if lam_arr.ndim:
            lam_arr = np.broadcast_to(lam_arr, self.mu.shape)             # (M, h, w)
        depth = np.empty(self.mu.shape, dtype=np.int64)                   # (M, h, w)
        index = np.empty(self.mu.shape, dtype=np.int64)
        zhat = np.empty(self.mu.shape, dtype=np.float64)
        scalar = lam_arr.ndim == 0
        for c0, c1 in self._channel_groups(CANDIDATE_GROUP_LATENTS) if scalar else self._groups:
            mu = self.mu[c0:c1].astype(np.float64, copy=False)            # (G, h, w)
            sigma = self.sigma[c0:c1].astype(np.float64, copy=False)
            prior = self._group_prior(c0, c1)
            if scalar:                            # the same symbols as below, bit for bit
                q = vbq.Candidates(mu, sigma, prior, self.max_depth).symbols(
                    float(lam_arr), second_pass)
            else:
                lam_g = lam_arr[c0:c1]
                q = vbq.quantize(mu, sigma, lam_g, prior, self.max_depth, axis=0)
                if second_pass:
                    q = vbq.second_pass(q, mu, sigma, lam_g, prior, self.max_depth, c1 - c0,
                                        axis=0)
            depth[c0:c1], index[c0:c1], zhat[c0:c1] = q.depth, q.index, q.zhat
        if sweeps:
            table = vbq.context_code_lengths(depth, self.max_depth)      # all channels
            # each group's candidates again: keeping every group's (about 110 bytes a
            # latent) from the loop above would cost more memory than rebuilding costs time
            for c0, c1 in self._channel_groups(CANDIDATE_GROUP_LATENTS):
                lam_g = lam_arr[c0:c1] if lam_arr.ndim else lam_arr
                cand = vbq.Candidates(self.mu[c0:c1], self.sigma[c0:c1],
                                      self._group_prior(c0, c1), self.max_depth)
                q = cand.context_pass(depth[c0:c1], lam_g, table, sweeps)
                depth[c0:c1], index[c0:c1], zhat[c0:c1] = q.depth, q.index, q.zhat
        return vbq.Quantized(depth, index, zhat, self.max_depth)

    def rate(self, q: vbq.Quantized) -> float:
        """bpp of the ideal code for q: the paper's estimate plus the header (no coding).

        :func:`bac_ref.entropy_model.paper_rate_estimate`; real files measured 0.88-1.11
        times this (README, "Rate control").
        """
        bits = entropy_model.paper_rate_estimate(q.depth, q.index, self.max_depth)
        return (bits + 8 * bitstream.HEADER_SIZE) / self.num_pixels

    def pixels(self) -> np.ndarray:
        """The input as the decoder's 8-bit pixels (SPEC.md §10), (H, W, 3) or (H, W)."""
        if self.source is None:
            raise ValueError("this encoder was built from latents: it has no image")
        if self._pixels is None:
            self._pixels = reference_pixels(self.source)
        return self._pixels

    def quality(self, q_or_zhat) -> float:
        """PSNR in dB of the pixels a decoder makes from these symbols (g_s in strips)."""
        zhat = getattr(q_or_zhat, "zhat", q_or_zhat)
        ref = self.pixels()
        sse = 0
        for r0, r1, px in reconstruct_strips(self.model, zhat, (self.height, self.width),
                                             self.grey):
            sse += sse_uint8(ref[r0:r1], px)
        return psnr_from_sse(sse, ref.size)

    def encode(self, lam, second_pass: bool = True, q: vbq.Quantized | None = None,
               context_pass: bool = True) -> Encoded:
        """VBQ at ``lam`` (or the given symbols ``q``), then the entropy model and the header."""
        _check_lam(lam)
        lam_arr = np.asarray(lam, dtype=np.float64)
        t0 = time.perf_counter()
        if q is None:
            q = self.symbols(lam, second_pass, context_pass)              # VBQ
        t1 = time.perf_counter()
        payload = entropy_model.encode_symbols(q.depth, q.index, self.max_depth)  # range coder
        header = bitstream.Header(
            height=self.height, width=self.width,
            lam=float(lam_arr.max()) + 0.0,       # + 0.0 turns -0.0 into 0.0
            max_depth=self.max_depth, model_id=model_id_bytes(self.model),
            grey=self.grey, lambda_map=lam_arr.ndim > 0, second_pass=bool(second_pass))
        times = dict(self.times, VBQ=t1 - t0, **{"entropy coding": time.perf_counter() - t1})
        return Encoded(bitstream.pack(header, payload), header, q.depth, q.index, q.zhat, lam,
                       times=times)


def encode_latents(mu, sigma, lam, *, height, width, grey=False, model=None,
                   max_depth=DEFAULT_MAX_DEPTH, second_pass=True, prior=None,
                   context_pass=True) -> Encoded:
    """compress() after g_a: VBQ of given latents (M, h, w), entropy model, header.

    The exact part of the encoder (SPEC.md §5, §8, §9; the conformance suite's
    array cases): the same code path as :func:`compress`, bit for bit.
    """
    _check_options(lam, None, None, max_depth)
    enc = Encoder.from_latents(mu, sigma, height, width, grey, model, max_depth, prior)
    return enc.encode(lam, second_pass, context_pass=context_pass)


def lambda_map_from_mask(mask, lam_inside: float, lam_outside: float, model=None) -> np.ndarray:
    """A (1, h, w) lambda map for region-of-interest coding.

    ``mask`` is a boolean (H, W) image-sized array (True = region of
    interest); a latent position gets ``lam_inside`` when any pixel of its
    16x16 block is inside, else ``lam_outside``.  Pass the result as ``lam``.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError("mask must be a 2-D (H, W) boolean array")
    d = DOWNSAMPLING
    h, w = -(-m.shape[0] // d), -(-m.shape[1] // d)
    padded = np.zeros((h * d, w * d), dtype=bool)
    padded[: m.shape[0], : m.shape[1]] = m
    inside = padded.reshape(h, d, w, d).any(axis=(1, 3))
    return np.where(inside, float(lam_inside), float(lam_outside))[None]


# ---------------------------------------------------------------------------
# The decoder
# ---------------------------------------------------------------------------
@dataclass
class Decoded:
    header: bitstream.Header
    depth: np.ndarray             # (M, h, w) int64
    index: np.ndarray
    zhat: np.ndarray              # (M, h, w) float64, bit-exact (SPEC.md §4.2)
    pixels: np.ndarray | None     # (H, W, 3) or (H, W) uint8, when synthesised
    times: dict = field(default_factory=dict)   # seconds per stage


def decode_symbols(data: bytes, model=None, max_pixels: int = MAX_DECODE_PIXELS):
    """Parse and entropy-decode: (header, depth, index, zhat) without synthesis.

    ``max_pixels`` bounds the work an untrusted file can demand: a tiny payload
    may declare a huge image (SPEC.md §8); larger files raise BitstreamError.
    """
    header, payload = bitstream.parse(data)
    if header.height * header.width > max_pixels:
        raise BitstreamError(f"the file declares {header.height}x{header.width} pixels, more than "
                             f"this decoder's limit of {max_pixels} (raise it with max_pixels= "
                             "or --max-pixels if you trust the file)")
    model = get_model(model)
    if model_id_bytes(model) != header.model_id:
        raise BitstreamError(
            f"this file was made with model {header.model_id.hex()}..., but the model "
            f"{os.path.basename(str(model.path))} has id {model.model_id[:16]}... "
            "(pass the right one with --model / model=)")
    h, w = header.latent_shape
    depth, index = entropy_model.decode_symbols(payload, (model.M, h, w), header.max_depth)
    return header, depth, index, _dequantize(depth, index, model_prior(model))


def _dequantize(depth, index, prior) -> np.ndarray:
    """vbq.dequantize (SPEC.md §4.2) by groups of channels (bounded temporaries), computed
    once per inactive channel (all depths 0: the channel's median).  Same numbers."""
    from .priors import QuantilePrior
    m = depth.shape[0]
    per_channel = max(1, depth[0].size)
    zeros = np.zeros((m, 1, 1), dtype=np.int64)
    zhat = np.empty(depth.shape, dtype=np.float64)                        # (M, h, w)
    zhat[...] = vbq.dequantize(zeros, zeros, prior, axis=0)               # the channel medians
    active = np.flatnonzero(depth.reshape(m, -1).any(axis=1))             # channel numbers
    step = max(1, GROUP_LATENTS // per_channel)
    for i in range(0, len(active), step):
        ch = active[i:i + step]
        sub = QuantilePrior(prior.table[ch])
        zhat[ch] = vbq.dequantize(depth[ch], index[ch], sub, axis=0)
    return zhat
