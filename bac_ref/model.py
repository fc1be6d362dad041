r"""The model: a checked model file plus the transforms g_a and g_s (SPEC.md §6, §7).

    load_model(name_or_path=None) -> Model
        .analysis(x)              x (H, W, 3) or (B, H, W, 3) float in [0, 1]
                                  -> mu, sigma: (M, h, w) or (B, M, h, w) float32, h = ceil(H/16)
        .synthesis(z, size=None)  z (M, h, w) or (B, M, h, w) -> x_hat (H, W, 3) or (B, H, W, 3)
            (both run in horizontal strips with a halo for large images: :mod:`bac_ref.tiling`)
        .model_id                 sha256 (hex) of the model file's bytes (SPEC.md §6.3)
        .meta, .N, .M, .path, .params, .arrays_extra

Finding the file (SPEC.md §6.3).  ``name_or_path`` is either a path to an existing file, or a
bare file name (".npz" may be left off) looked up, first hit wins, in

    1. the directory named by the environment variable BAC_REF_MODEL_DIR,
    2. ``pretrained_npz/`` next to the package directory (source tree, editable installs),
    3. ``<sys.prefix>/share/bac_ref/pretrained_npz`` (installed data files).

``None`` means :data:`DEFAULT_MODEL`.

Checking the file (SPEC.md §6.1-6.3).  The bytes are read once; their sha256 is the model id.
When the file's folder holds a ``MANIFEST.json`` ({file name: {"sha256", "bytes"}}), the file
must be listed there with that hash and size.  A file in a folder without a manifest loads
unverified (its hash is still computed and reported as ``model_id``, which a bitstream names).
The same bytes are then parsed with ``numpy.load(allow_pickle=False)`` (no code can run), and

    - the names are exactly those of :data:`bac_ref.weights.PARAM_LAYOUT` plus ``meta_json``,
      plus any number of ``prior.*`` / ``codec.*`` arrays (tables of other stages, passed
      through untouched as ``arrays_extra``); any other name is an error;
    - N and M are derived from ``g_a.conv0.weight`` (N, 3, 9, 9) and ``g_s.deconv0.weight``
      (M, N, 5, 5); every weight must then have the shape PARAM_LAYOUT gives for (N, M),
      dtype float32, finite values, GDN beta > 0 and gamma >= 0;
    - ``meta_json`` is a 0-d unicode array holding a JSON object with ``architecture`` ==
      "bmshj2017-gaussian-vae" and integers ``N``, ``M`` equal to the derived ones.

Any failure raises :class:`bac_ref.errors.ModelFileError` naming the file and the problem.
This module imports NumPy only (never torch).
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
import os
import sys
from typing import Mapping

import numpy as np

from . import g_a, tiling
from .errors import ModelFileError
from .weights import PARAM_LAYOUT

__all__ = ["Model", "load_model", "resolve_model_path", "model_search_dirs", "read_model_file",
           "DEFAULT_MODEL", "ARCHITECTURE", "MODEL_DIR_ENV", "EXTRA_PREFIXES"]

#: File name of the shipped default model (resolved like any bare name).
DEFAULT_MODEL = "bmshj2017-vae-n128.npz"
#: Value of meta["architecture"] that this code implements.
ARCHITECTURE = "bmshj2017-gaussian-vae"
#: Environment variable naming the first directory searched for bare model names.
MODEL_DIR_ENV = "BAC_REF_MODEL_DIR"
#: Name prefixes of arrays that belong to other stages (priors, codec tables).
EXTRA_PREFIXES = ("prior.", "codec.")
MANIFEST_NAME = "MANIFEST.json"
_META = "meta_json"


# ---------------------------------------------------------------------------
# Finding the file
# ---------------------------------------------------------------------------
def model_search_dirs() -> list[str]:
    """Directories searched for a bare model name, in order (see the module docstring)."""
    dirs = []
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        dirs.append(env)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs.append(os.path.join(package_parent, "pretrained_npz"))
    dirs.append(os.path.join(sys.prefix, "share", "bac_ref", "pretrained_npz"))
    return dirs


def resolve_model_path(name_or_path=None) -> str:
    """Absolute path of the model file ``name_or_path`` names; ModelFileError if there is none."""
    name = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    if os.path.isfile(name):
        return os.path.abspath(name)
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    if not name or any(sep in name for sep in seps):
        raise ModelFileError(f"model file not found: {name!r}")
    candidates = [name] if name.endswith(".npz") else [name, name + ".npz"]
    dirs = model_search_dirs()
    for folder in dirs:
        for cand in candidates:
            path = os.path.join(folder, cand)
            if os.path.isfile(path):
                return os.path.abspath(path)
    what = "the default model" if name_or_path is None else "model"
    raise ModelFileError(
        f"{what} {name!r} not found; searched: {', '.join(dirs)}. "
        f"Pass a path to a .npz model file or set {MODEL_DIR_ENV} to its folder.")


# ---------------------------------------------------------------------------
# Checking the file
# ---------------------------------------------------------------------------
def _check_manifest(path: str, nbytes: int, digest: str) -> bool:
    """Verify ``path`` against MANIFEST.json in its folder; False when there is no manifest."""
    folder, fname = os.path.split(os.path.abspath(path))
    mpath = os.path.join(folder, MANIFEST_NAME)
    if not os.path.exists(mpath):
        return False
    try:
        with open(mpath, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot verify, unreadable manifest {mpath} ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{path}: cannot verify, manifest {mpath} is not a JSON object")
    entry = manifest.get(fname)
    if entry is None:
        raise ModelFileError(f"{path}: not listed in {mpath}; a folder with a manifest "
                             "holds only the files it lists")
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise ModelFileError(f"{path}: cannot verify, its entry in {mpath} lacks a sha256 string")
    if entry["sha256"].lower() != digest:
        raise ModelFileError(f"{path}: sha256 mismatch: the file has {digest}, "
                             f"{mpath} says {entry['sha256']} (corrupted or replaced file?)")
    if "bytes" in entry and entry["bytes"] != nbytes:
        raise ModelFileError(f"{path}: size {nbytes} bytes, {mpath} says {entry['bytes']}")
    return True


def _fail(path: str, msg: str):
    raise ModelFileError(f"{path}: {msg}")


def read_model_file(path: str):
    """Read and check one model file (module docstring).

    Returns ``(params, meta, extra, sha256_hex, verified)``: params maps every
    PARAM_LAYOUT name to a float32 array, extra the ``prior.*``/``codec.*`` arrays,
    verified tells whether a manifest vouched for the hash.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    verified = _check_manifest(path, len(data), digest)

    # -- parse: allow_pickle=False, so object arrays raise instead of unpickling --
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            _fail(path, "not an .npz archive")
        with npz:
            arrays = {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except Exception as exc:    # noqa: BLE001 -- whatever a corrupted archive makes zipfile or
        # numpy raise (ValueError, BadZipFile, NotImplementedError for an unknown compression,
        # RuntimeError if encrypted, tokenize.TokenError/SyntaxError for a mangled .npy header,
        # MemoryError for a header declaring a huge shape) is the file's fault.
        raise ModelFileError(f"{path}: not a readable .npz model file "
                             f"(pickled/object arrays are refused): {type(exc).__name__}: "
                             f"{exc}") from exc
    with zipfile.ZipFile(io.BytesIO(data)) as zf:         # SPEC.md §6.0: stored entries, so
        packed = sorted(i.filename for i in zf.infolist()  # that a reader needs no inflater
                        if i.compress_type != zipfile.ZIP_STORED or i.flag_bits & 8)
    if packed:
        _fail(path, f"entries must be stored uncompressed, without data descriptor "
                    f"(SPEC.md §6.0): {', '.join(packed)}")
    not_npy = sorted(name for name, a in arrays.items() if not isinstance(a, np.ndarray))
    if not_npy:                 # np.load returns a member without the .npy magic as raw bytes
        _fail(path, f"members that are not .npy arrays: {', '.join(not_npy)}")

    # -- names (SPEC.md §6.1) --
    required = set(PARAM_LAYOUT) | {_META}
    missing = sorted(required - set(arrays))
    if missing:
        _fail(path, f"missing arrays: {', '.join(missing)}")
    unknown = sorted(n for n in arrays if n not in required and not n.startswith(EXTRA_PREFIXES))
    if unknown:
        _fail(path, f"unknown arrays: {', '.join(unknown)} (only the weights of SPEC.md §6.1, "
                    f"meta_json and names starting with {' or '.join(EXTRA_PREFIXES)} are allowed)")

    # -- sizes from the arrays, then every shape, dtype and value --
    w0, d0 = arrays["g_a.conv0.weight"], arrays["g_s.deconv0.weight"]
    if w0.ndim != 4 or d0.ndim != 4 or w0.shape[0] < 1 or d0.shape[0] < 1:
        _fail(path, f"cannot derive N and M from g_a.conv0.weight {w0.shape} "
                    f"and g_s.deconv0.weight {d0.shape}")
    n, m = int(w0.shape[0]), int(d0.shape[0])
    params = {}
    for name, shape_of in PARAM_LAYOUT.items():
        a = arrays[name]
        if a.shape != shape_of(n, m):
            _fail(path, f"{name} has shape {a.shape}, expected {shape_of(n, m)} for N={n}, M={m}")
        if a.dtype != np.float32:
            _fail(path, f"{name} has dtype {a.dtype}, expected float32")
        if not np.isfinite(a).all():
            _fail(path, f"{name} holds NaN or infinite values")
        if name.endswith(".beta") and not (a > 0).all():
            _fail(path, f"{name} must be > 0 (GDN divides by sqrt(beta + ...))")
        if name.endswith(".gamma") and not (a >= 0).all():
            _fail(path, f"{name} must be >= 0")
        a = np.ascontiguousarray(a)
        a.setflags(write=False)
        params[name] = a

    # -- metadata (SPEC.md §6.2) --
    raw = arrays[_META]
    if raw.ndim != 0 or raw.dtype.kind != "U":
        _fail(path, f"meta_json must be a 0-d unicode array, got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except (ValueError, SystemError) as exc:    # SystemError: code points > 0x10FFFF in the array
        raise ModelFileError(f"{path}: meta_json is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        _fail(path, "meta_json must hold a JSON object")
    if meta.get("architecture") != ARCHITECTURE:
        _fail(path, f"meta architecture is {meta.get('architecture')!r}, expected {ARCHITECTURE!r}")
    for key, val in (("N", n), ("M", m)):
        if type(meta.get(key)) is not int or meta[key] != val:
            _fail(path, f"meta {key} is {meta.get(key)!r} but the arrays give {key}={val}")

    extra = {k: v for k, v in arrays.items() if k.startswith(EXTRA_PREFIXES)}
    return params, meta, extra, digest, verified


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------
def _float_input(a, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"{what} must be a floating-point array, got dtype {a.dtype}"
                        + (" (divide 8-bit images by 255)" if a.dtype == np.uint8 else ""))
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return a


class Model:
    """The Gaussian VAE's transforms with checked weights; build it with :func:`load_model`."""

    def __init__(self, path: str, params: Mapping[str, np.ndarray], meta: dict, model_id: str,
                 arrays_extra: Mapping[str, np.ndarray] | None = None, verified: bool = False):
        self.path = path
        self.params = dict(params)
        self.meta = meta
        self.model_id = model_id
        self.verified = verified
        self.arrays_extra = dict(arrays_extra or {})
        self.N = int(self.params["g_a.conv0.weight"].shape[0])
        self.M = int(self.params["g_s.deconv0.weight"].shape[0])

    def __repr__(self):
        return (f"Model(path={self.path!r}, N={self.N}, M={self.M}, "
                f"model_id={self.model_id[:16]}...)")

    def analysis(self, x, strip_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """g_a: x (H, W, 3) or (B, H, W, 3) in [0, 1] -> (mu, sigma), (M, h, w) or (B, M, h, w).

        Any H, W >= 1; the image is padded by edge replication to multiples of 16
        (SPEC.md §7.2) and h = ceil(H/16), w = ceil(W/16).  sigma = exp(logvar / 2).
        Large images run in strips of ``strip_rows`` latent rows (default: a pixel budget,
        :mod:`bac_ref.tiling`); the result is the whole-image result (SPEC.md §7.3).
        """
        x = _float_input(x, "image")
        if x.ndim not in (3, 4) or x.shape[-1] != 3 or 0 in x.shape[-3:-1]:
            raise ValueError(f"image must have shape (H, W, 3) or (B, H, W, 3) with H, W >= 1, "
                             f"got {x.shape}")
        batch = x if x.ndim == 4 else x[None]                         # (B, H, W, 3)
        hp, wp = g_a.padded_size(*batch.shape[1:3])
        h, w = hp // g_a.DOWNSAMPLING, wp // g_a.DOWNSAMPLING
        mu = np.empty((batch.shape[0], self.M, h, w), dtype=np.float32)      # (B, M, h, w)
        sigma = np.empty_like(mu)                                            # (B, M, h, w)
        for b in range(batch.shape[0]):
            def rows(r0, r1, img=batch[b]):
                return np.ascontiguousarray(img[r0:r1].transpose(2, 0, 1))   # (3, rows, W)
            mu[b], sigma[b] = tiling.analysis(self.params, rows, *batch.shape[1:3],
                                              strip_rows=strip_rows)
        if x.ndim == 3:
            return mu[0], sigma[0]
        return mu, sigma

    def synthesis(self, z, size: tuple[int, int] | None = None,
                  strip_rows: int | None = None) -> np.ndarray:
        """g_s: z (M, h, w) or (B, M, h, w) -> x_hat (H, W, 3) or (B, H, W, 3), float32, unclipped.

        ``size = (H, W)`` is the original image size (ceil(H/16) == h, ceil(W/16) == w);
        None gives (16h, 16w).  Large images run in strips (:mod:`bac_ref.tiling`).
        """
        z = _float_input(z, "latents")
        if z.ndim not in (3, 4) or z.shape[-3] != self.M or 0 in z.shape[-2:]:
            raise ValueError(f"latents must have shape ({self.M}, h, w) or (B, {self.M}, h, w) "
                             f"with h, w >= 1, got {z.shape}")
        batch = z if z.ndim == 4 else z[None]                         # (B, M, h, w)
        h, w = batch.shape[2:]
        if size is None:
            size = (g_a.DOWNSAMPLING * h, g_a.DOWNSAMPLING * w)
        size = tuple(int(s) for s in size)
        out = np.empty((batch.shape[0],) + size + (3,), dtype=np.float32)  # (B, H, W, 3)
        for b in range(batch.shape[0]):
            zb = np.ascontiguousarray(batch[b])                                # (M, h, w)
            for r0, r1, y in tiling.synthesis(self.params, zb, size, strip_rows):  # (3, rows, W)
                out[b, r0:r1] = y.transpose(1, 2, 0)
        return out if z.ndim == 4 else out[0]


def load_model(name_or_path=None) -> Model:
    """Find, read and check a model file (module docstring); ModelFileError on any problem."""
    path = resolve_model_path(name_or_path)
    params, meta, extra, digest, verified = read_model_file(path)
    return Model(path, params, meta, digest, extra, verified)
