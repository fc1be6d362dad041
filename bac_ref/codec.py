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

Size and quality: bpp = 8 len(.bac) / (H W), header included; PSNR =
10 log10(255^2 / MSE) on the 8-bit pixels of SPEC.md §10.

lambda is the only rate knob and is chosen here, at compression time; one
trained model serves every rate (the paper's central claim).  ``bpp=`` and
``psnr=`` search lambda for a target; ``lam`` may also be an array (a
per-latent lambda map, e.g. :func:`lambda_map_from_mask` for region-of-
interest coding).  Only the encoder ever sees lambda: the decoder needs the
file and the model, nothing else.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from . import bitstream, entropy_model, vbq
from .errors import BitstreamError, ModelFileError
from .evaluate import psnr  # noqa: F401  (re-exported: codec.psnr is public API)
from .imageio import ImageData, read_image, to_rgb_float

DEFAULT_MAX_DEPTH = 10
LAMBDA_RANGE = (1e-4, 1e5)          # where the rate searches look
MAX_DECODE_PIXELS = 1 << 25         # default decoder limit (SPEC.md §8, memory bombs)


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
# Input images
# ---------------------------------------------------------------------------
def as_float_image(image):
    """(H, W, 3) float32 in [0, 1] and a grey flag, from a path, ImageData or array.

    Arrays: uint8 / uint16 (scaled by 255 / 65535) or float in [0, 1]; shape
    (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha is ignored).
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    if isinstance(image, ImageData):
        return to_rgb_float(image), image.mode in ("L", "LA")
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 2, 3, 4) or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"an image must be (H, W) or (H, W, 1|2|3|4); got shape {x.shape}")
    grey = x.shape[2] in (1, 2)
    x = x[:, :, :1] if grey else x[:, :, :3]
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    elif x.dtype == np.uint16:
        x = x.astype(np.float32) / np.float32(65535)
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise ValueError("float images must be finite and lie in [0, 1]")
        x = x.astype(np.float32)
    else:
        raise ValueError(f"unsupported image dtype {x.dtype} (use uint8, uint16 or float)")
    if grey:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x), grey


def to_pixels(x_hat: np.ndarray, grey: bool) -> np.ndarray:
    """SPEC.md §10, in float32: clip to [0, 1], times 255, round half to even; grey = channel mean."""
    x_hat = np.asarray(x_hat, dtype=np.float32)
    if grey:
        x_hat = x_hat.mean(axis=2, dtype=np.float32)
    if not np.all(np.isfinite(x_hat)):
        raise ValueError("the reconstruction holds NaN or infinite values")
    return np.rint(np.clip(x_hat, np.float32(0), np.float32(1)) * np.float32(255)).astype(np.uint8)



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

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.header.height * self.header.width)


class _Analysed:
    """The encoder's view of one image: posterior and everything fixed for all lambdas."""

    def __init__(self, image, model, max_depth):
        self.model = get_model(model)
        self.x, self.grey = as_float_image(image)
        self.height, self.width = self.x.shape[:2]
        if not (self.height <= 65536 and self.width <= 65536
                and self.height * self.width <= bitstream.MAX_PIXELS):
            raise ValueError(f"image of {self.height}x{self.width} pixels is larger than "
                             f"the format allows (SPEC.md §8)")
        self.mu, self.sigma = self.model.analysis(self.x)          # (M, h, w) float32
        self.mu = self.mu.astype(np.float64)
        self.sigma = self.sigma.astype(np.float64)
        self.prior = model_prior(self.model)
        self.max_depth = max_depth
        self._pixels = None

    @classmethod
    def from_latents(cls, mu, sigma, height, width, grey=False, model=None,
                     max_depth=DEFAULT_MAX_DEPTH, prior=None):
        """The encoder's view of given latents (M, h, w): everything after g_a.

        ``prior`` defaults to the model's (SPEC.md §10); (height, width) is the image
        size the header records (ceil(H/16) = h, ceil(W/16) = w).
        """
        self = cls.__new__(cls)
        self.model = get_model(model)
        self.x, self.grey, self._pixels = None, bool(grey), None
        self.height, self.width = int(height), int(width)
        self.mu = np.asarray(mu, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        if self.mu.ndim != 3 or self.mu.shape[0] != self.model.M:
            raise ValueError(f"mu must be (M, h, w) with M = {self.model.M}, got {self.mu.shape}")
        if self.mu.shape[1:] != (-(-self.height // 16), -(-self.width // 16)):
            raise ValueError(f"mu {self.mu.shape} does not match an image of "
                             f"{self.height}x{self.width}")
        self.prior = model_prior(self.model) if prior is None else prior
        self.max_depth = max_depth
        return self

    def quantize(self, lam, code_length=None):
        return vbq.quantize(self.mu, self.sigma, lam, self.prior, self.max_depth,
                            code_length=code_length, axis=0)

    def symbols(self, lam, second_pass=True) -> vbq.Quantized:
        """VBQ at ``lam``: the first pass, then (by default) the second (SPEC.md §5.4)."""
        q = self.quantize(lam)
        if second_pass:
            q = vbq.second_pass(q, self.mu, self.sigma, lam, self.prior, self.max_depth,
                                self.model.M, axis=0)
        return q

    def encode(self, lam, second_pass=True) -> Encoded:
        lam_arr = np.asarray(lam, dtype=np.float64)
        q = self.symbols(lam, second_pass)
        payload = entropy_model.encode_symbols(q.depth, q.index, self.max_depth)
        header = bitstream.Header(
            height=self.height, width=self.width,
            lam=float(lam_arr.max()) + 0.0,       # + 0.0 turns -0.0 into 0.0
            max_depth=self.max_depth, model_id=model_id_bytes(self.model),
            grey=self.grey, lambda_map=lam_arr.ndim > 0, second_pass=bool(second_pass))
        return Encoded(bitstream.pack(header, payload), header, q.depth, q.index, q.zhat, lam)

    def pixels(self):
        if self._pixels is None:
            self._pixels = to_pixels(self.x, self.grey)
        return self._pixels

    def psnr_of(self, zhat) -> float:
        x_hat = self.model.synthesis(zhat.astype(np.float32), size=(self.height, self.width))
        return psnr(self.pixels(), to_pixels(x_hat, self.grey))


def encode_latents(mu, sigma, lam, *, height, width, grey=False, model=None,
                   max_depth=DEFAULT_MAX_DEPTH, second_pass=True, prior=None) -> Encoded:
    """compress() after g_a: VBQ of given latents (M, h, w), entropy model, header.

    The exact part of the encoder (SPEC.md §5, §8, §9; the conformance suite's
    array cases): the same code path as :func:`compress`, bit for bit.
    """
    _check_lam(lam)
    a = _Analysed.from_latents(mu, sigma, height, width, grey, model, max_depth, prior)
    return a.encode(lam, second_pass)


def _check_lam(lam):
    arr = np.asarray(lam, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise ValueError(f"lambda must be finite and >= 0 (got {lam!r})")
    return lam


def _search(f, target, increasing, progress=None, iters=40, rtol=0.0):
    """Bisection on log(lambda) in LAMBDA_RANGE for f(lam) ~ target.

    f is monotone in lambda (``increasing`` says which way).  Returns the
    list of evaluated (lam, value) pairs.
    """
    lo, hi = math.log(LAMBDA_RANGE[0]), math.log(LAMBDA_RANGE[1])
    seen = []
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lam = math.exp(mid)
        value = f(lam)
        seen.append((lam, value))
        if progress:
            progress(f"lambda {lam:.4g}: {value:.4f}")
        if rtol and abs(value - target) <= rtol * abs(target):
            break
        if (value < target) == increasing:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-4:
            break
    return seen


def compress_details(image, lam=None, *, bpp=None, psnr=None, model=None,
                     max_depth=DEFAULT_MAX_DEPTH, second_pass=True, progress=None) -> Encoded:
    """Compress and return the bytes with the symbols and lambda used.

    Exactly one of ``lam`` (a number >= 0, or an array broadcastable to the
    (M, h, w) latents: a lambda map), ``bpp`` (a target size in bits per
    pixel: the closest achievable size is returned, within 2% when the target
    is inside the model's range) or ``psnr`` (a target PSNR in dB on 8-bit
    RGB: the smallest file that reaches it, or the best quality possible).
    ``second_pass=False`` skips the paper's second pass (SPEC.md §5.4).
    """
    if sum(v is not None for v in (lam, bpp, psnr)) != 1:
        raise ValueError("give exactly one of lam=, bpp= or psnr=")
    if not (isinstance(max_depth, (int, np.integer)) and 1 <= max_depth <= bitstream.MAX_DEPTH_LIMIT):
        raise ValueError(f"max_depth must be an integer in 1..{bitstream.MAX_DEPTH_LIMIT}")
    a = _Analysed(image, model, int(max_depth))
    if lam is not None:
        return a.encode(_check_lam(lam), second_pass)
    if bpp is not None:
        if not (bpp > 0 and math.isfinite(bpp)):
            raise ValueError(f"bpp must be a positive number (got {bpp!r})")
        return _encode_for_bpp(a, float(bpp), second_pass, progress)
    if not (psnr > 0 and math.isfinite(psnr)):
        raise ValueError(f"psnr must be a positive number (got {psnr!r})")
    return _encode_for_psnr(a, float(psnr), second_pass, progress)


def _encode_for_bpp(a: _Analysed, target: float, second_pass, progress) -> Encoded:
    """Bisection on lambda with the real file size (monotone up to coding noise)."""
    cache = {}

    def size(lam):
        enc = a.encode(lam, second_pass)
        cache[lam] = enc
        return enc.bpp

    seen = _search(size, target, increasing=False, progress=progress, iters=24, rtol=0.01)
    best = min(seen, key=lambda p: abs(p[1] - target))
    return cache[best[0]]


def _encode_for_psnr(a: _Analysed, target: float, second_pass, progress) -> Encoded:
    """Bisection on lambda: the largest lambda (smallest file) whose PSNR >= target."""
    def quality(lam):
        return a.psnr_of(a.symbols(lam, second_pass).zhat)

    seen = _search(quality, target, increasing=False, progress=progress, iters=20)
    ok = [lam for lam, v in seen if v >= target]
    lam = max(ok) if ok else min(seen, key=lambda p: p[0])[0]
    return a.encode(lam, second_pass)


def compress(image, lam=None, *, bpp=None, psnr=None, model=None,
             max_depth=DEFAULT_MAX_DEPTH, second_pass=True) -> bytes:
    """Compress an image (path, ImageData or array) to .bac bytes (SPEC.md §8)."""
    return compress_details(image, lam, bpp=bpp, psnr=psnr, model=model,
                            max_depth=max_depth, second_pass=second_pass).data


def lambda_map_from_mask(mask, lam_inside: float, lam_outside: float, model=None) -> np.ndarray:
    """A (1, h, w) lambda map for region-of-interest coding.

    ``mask`` is a boolean (H, W) image-sized array (True = region of
    interest); a latent position gets ``lam_inside`` when any pixel of its
    16x16 block is inside, else ``lam_outside``.  Pass the result as ``lam``.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError("mask must be a 2-D (H, W) boolean array")
    h, w = -(-m.shape[0] // 16), -(-m.shape[1] // 16)
    padded = np.zeros((h * 16, w * 16), dtype=bool)
    padded[: m.shape[0], : m.shape[1]] = m
    inside = padded.reshape(h, 16, w, 16).any(axis=(1, 3))
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
    zhat = vbq.dequantize(depth, index, model_prior(model), axis=0)
    return header, depth, index, zhat


def decompress_details(data: bytes, model=None, synthesize: bool = True,
                       max_pixels: int = MAX_DECODE_PIXELS) -> Decoded:
    model = get_model(model)
    header, depth, index, zhat = decode_symbols(data, model, max_pixels)
    pixels = None
    if synthesize:
        x_hat = model.synthesis(zhat.astype(np.float32), size=(header.height, header.width))
        pixels = to_pixels(x_hat, header.grey)
    return Decoded(header, depth, index, zhat, pixels)


def decompress(data: bytes, model=None, max_pixels: int = MAX_DECODE_PIXELS) -> np.ndarray:
    """Decode .bac bytes to a uint8 image, (H, W, 3) RGB or (H, W) grey (SPEC.md §10)."""
    return decompress_details(data, model, max_pixels=max_pixels).pixels
