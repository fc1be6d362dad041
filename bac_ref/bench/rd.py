r"""``bac-ref bench``: rate-distortion benchmark of VBQ against baselines and image codecs.

    bac-ref bench IMAGES... --out DIR [--limit N] [--codecs vbq,jpeg,...]
                  [--lambdas L,...] [--qualities Q,...] [--levels N,...] [--steps S,...]
                  [--train-dir DIR] [--fit-images 40] [--model PATH] [--no-plot] [--quiet]

IMAGES are files or folders (their *.png / *.jpg, sorted).  Every image is
coded by every codec at every setting; sizes are real bytes, distortion is
measured on RGB uint8 pixels (:mod:`bac_ref.bench.evaluate`).  What each codec is::

    image --g_a--> (mu, sigma) --+-- vbq      VBQ(lam) + .bac entropy model   -> whole .bac file
                                 +-- vbq2     + second and context passes       -> whole .bac file
            (one model)          +-- blind    vbq with sigma := per-channel RMS -> whole .bac file
                                 +-- blind2   vbq2 with the same sigma         -> whole .bac file
                                 +-- uniform  n equal bins per channel             \ payload from the
                                 +-- kmeans   k 1-D centroids per channel          | same range coder
                                 +-- rounding rint(mu / step)                     /  + 32 bytes
                      zhat --g_s--> x_hat --round--> pixels
    image --Pillow--> jpeg / webp / avif (quality q) --> whole file --> Pillow decode --> pixels

* vbq2: the codec's default, VBQ with the paper's second pass (SPEC.md §5.4:
  the depth cost replaced by the image's own per-channel depth code lengths,
  as in the authors' code, in three rounds; the flag travels in the header),
  then the context pass (SPEC.md §5.6: depths priced by the entropy model's
  contexts, two sweeps).
* vbq: the first pass alone (``--no-second-pass --no-context-pass``, the paper's
  plain objective):
  :class:`bac_ref.codec.Encoder` (posterior once per image) and
  ``.encode(lam, second_pass=False, context_pass=False)`` for a lambda grid (default
  2^linspace(-3, 9, 13): 0.125 .. 512, about 2 down to 0.005 bpp with the
  shipped model); size = the whole .bac
  file (32-byte header included); pixels from the encoder's zhat, which is
  bit-identical to the decoder's (SPEC.md §4.2; tests/test_codec.py).
* blind / blind2: the uncertainty-blind ablation (SPEC.md §12): the codec
  itself, first pass / all passes, with every sigma replaced by its channel's RMS
  over the fitting set (``BlindVBQ.sigma_c``), so that it differs from vbq /
  vbq2 in sigma alone; size = the whole .bac file, which the ordinary decoder
  reads.
* uniform, kmeans, rounding (:mod:`bac_ref.bench.baselines`; SPEC.md §12): per-channel parameters and
  static 24-bit tables fitted on the posterior (mu, sigma) of ``--fit-images``
  TRAINING images (``bac_ref.training.release.training_images``; never the benchmark
  images; cached in DIR/baselines.npz); size = range-coder payload +
  BASELINE_HEADER_BYTES = 32, the size of a .bac header (SPEC.md §8), as the
  equivalent of the side information a real file would need (image size,
  setting, model id).  The tables are not counted (they are part of the
  "model"), as in the paper.  Levels 2..256 are the paper's; blind VBQ uses the
  coding prior of the model and the VBQ lambda grid.
* jpeg / webp / avif: Pillow with its defaults apart from ``quality`` (JPEG:
  4:2:0, baseline, no optimize; WebP: method 4; AVIF: speed 6 where
  supported), size = the whole file; WebP / AVIF are skipped (with a
  warning) when ``PIL.features.check`` says Pillow lacks them.

Outputs in DIR::

    images/<stem>.json   per image: every codec and setting (bytes, bpp, psnr, ms_ssim, seconds)
    baselines.npz/.json  fitted baselines (cache) and what they were fitted on
    results.json         config, per-image and mean results, BD-rate / BD-PSNR against JPEG
    results.md           the same as Markdown tables
    rd.png               PSNR and MS-SSIM vs bpp, with the paper's anchors (needs matplotlib)

Runs are resumable: a per-image file is rewritten after every codec, and a
later run computes only the (codec, setting) pairs that are missing or whose
provenance changed (model id, :func:`code_fingerprint` of the codec's source,
fitted baselines, Pillow and codec library versions).  Means are
over images (mean bpp, mean PSNR, mean MS-SSIM per setting), the convention
of the paper's anchor numbers; BD numbers compare mean curves.

Needs Pillow for jpeg / webp / avif and for JPEG training images, and
matplotlib for rd.png: ``pip install 'bac_ref[bench]'``.  Both are imported
only when used.  Kodak is a test set: this module only measures on it.
"""
from __future__ import annotations

import copy
import glob
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import evaluate
from ..weights import sha256_file

RESULT_VERSION = 1
CODECS = ("vbq", "vbq2", "jpeg", "webp", "avif", "uniform", "kmeans", "blind", "blind2",
          "rounding")
BASELINE_CODECS = ("uniform", "kmeans", "blind", "blind2", "rounding")   # fitted on training images
BLIND_CODECS = ("blind", "blind2")            # coded by the codec itself, sigma := sigma_c
LATENT_CODECS = ("vbq", "vbq2") + BASELINE_CODECS
PILLOW_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
PARAM_NAME = {"vbq": "lam", "vbq2": "lam", "blind": "lam", "blind2": "lam",
              "jpeg": "quality", "webp": "quality",
              "avif": "quality", "uniform": "levels", "kmeans": "k", "rounding": "step"}
DEFAULT_LAMBDAS = tuple(float(v) for v in 2.0 ** np.linspace(-3, 9, 13))   # 0.125 .. 512
DEFAULT_QUALITIES = (1, 3, 5, 8, 12, 16, 24, 32, 48, 64, 80, 90, 95)
DEFAULT_LEVELS = (2, 4, 6, 8, 16, 32, 64, 128, 256)                       # the paper's
DEFAULT_STEPS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
DEFAULT_FIT_IMAGES = 40
BASELINE_HEADER_BYTES = 32            # = bitstream.HEADER_SIZE, the .bac header (SPEC.md §8)
BENCH_EXTRA_HINT = "pip install 'bac_ref[bench]'"

# The paper's comparison points on Kodak (vbq-paper.md, "Anchor numbers"): (bpp, PSNR dB).
PAPER_JPEG = {8: (0.279, 25.87), 12: (0.359, 27.34), 16: (0.433, 28.37), 32: (0.675, 30.66),
              48: (0.870, 31.96), 64: (1.090, 33.18), 80: (1.556, 35.27), 90: (2.337, 37.95)}
PAPER_BALLE2017 = ((0.064, 25.48), (0.106, 26.74), (0.174, 28.08), (0.286, 29.71),
                   (0.455, 31.50), (0.709, 33.71))
PAPER_MS_SSIM = {"JPEG": ((0.433, 0.929), (0.675, 0.963)),               # q16, q32
                 "Balle 2017": ((0.286, 0.954), (0.455, 0.971))}


class BenchError(ValueError):
    """A bad benchmark request or a missing optional dependency (``bac-ref bench`` exit 2)."""


@dataclass
class BenchConfig:
    """What to run; the defaults are the full benchmark."""
    codecs: tuple = CODECS
    lambdas: tuple = DEFAULT_LAMBDAS
    qualities: tuple = DEFAULT_QUALITIES
    levels: tuple = DEFAULT_LEVELS
    steps: tuple = DEFAULT_STEPS
    train_dir: str | None = None
    fit_images: int = DEFAULT_FIT_IMAGES
    model: str | None = None
    max_depth: int = 10
    plot: bool = True
    limit: int = 0

    def settings(self, codec: str) -> tuple:
        grid = {"vbq": self.lambdas, "vbq2": self.lambdas, "blind": self.lambdas,
                "blind2": self.lambdas, "jpeg": self.qualities,
                "webp": self.qualities, "avif": self.qualities, "uniform": self.levels,
                "kmeans": self.levels, "rounding": self.steps}[codec]
        if codec in ("vbq", "vbq2", "blind", "blind2", "rounding"):
            return tuple(float(v) for v in grid)
        return tuple(int(v) for v in grid)


def setting_key(codec: str, value) -> str:
    """'lam=0.125', 'quality=8', 'levels=16', 'k=16', 'step=0.5' (the JSON keys)."""
    return f"{PARAM_NAME[codec]}={value:.6g}"


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
class _Log:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"bac-ref: warning: {message}", file=sys.stderr, flush=True)


def _write_json(path: str, obj) -> None:
    from ..imageio import atomic_write
    atomic_write(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode(), overwrite=True)


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _finite_or_none(v):
    return None if v is None or not math.isfinite(v) else float(v)


def _pillow():
    try:
        import PIL
        from PIL import Image, features
    except ImportError:
        raise BenchError(f"the jpeg/webp/avif codecs need Pillow ({BENCH_EXTRA_HINT}), or "
                         f"leave them out with --codecs") from None
    return PIL, Image, features


def expand_images(paths, limit: int = 0) -> list:
    """Files as given, folders as their sorted *.png / *.jpg; the first ``limit`` (0: all)."""
    files = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, "*.png")) + glob.glob(os.path.join(p, "*.jpg")))
            if not found:
                raise BenchError(f"{p}: no *.png or *.jpg images in this folder")
            files.extend(found)
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(2, "no such file or folder", p)
    if limit:
        files = files[:limit]
    stems = {}
    for f in files:
        s = os.path.splitext(os.path.basename(f))[0]
        if s in stems:
            raise BenchError(f"{f} and {stems[s]} have the same name; results are kept per name")
        stems[s] = f
    return files


def default_train_dir() -> str | None:
    """../shared/data/train from the working folder or from the source tree, if present."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for root in (os.getcwd(), here):
        cand = os.path.normpath(os.path.join(root, "..", "shared", "data", "train"))
        if os.path.isdir(cand):
            return cand
    return None


# ---------------------------------------------------------------------------
# Baselines: fit on training images, cache in DIR/baselines.npz
# ---------------------------------------------------------------------------
def fit_files(train_dir: str, n: int) -> list:
    """``n`` training images spread evenly over the training split (release's rule)."""
    from ..training.release import training_images
    files = training_images(train_dir)
    if not files:
        raise BenchError(f"{train_dir}: no training images (*.png / *.jpg / *.webp) found")
    return files[:: max(1, len(files) // n)][:n]


def _quantizer(codec, value, prior, max_depth):
    from . import baselines as B
    if codec == "uniform":
        return B.UniformQuantizer(int(value))
    if codec == "kmeans":
        return B.KMeansQuantizer(int(value))
    if codec == "blind":
        return B.BlindVBQ(float(value), prior, max_depth)
    return B.IntegerRounding(float(value))


_STATE = {"uniform": ("lo", "delta"), "kmeans": ("centroids",), "blind": ("sigma_c",),
          "rounding": ("lo", "hi")}


def _state_arrays(codec, q) -> dict:
    out = {name: np.asarray(getattr(q, name)) for name in _STATE[codec]}
    out["counts"] = q.model.counts
    return out


def _restore(codec, value, arrays, prior, max_depth):
    from .baselines import ChannelEntropyModel
    q = _quantizer(codec, value, prior, max_depth)
    for name in _STATE[codec]:
        setattr(q, name, arrays[name])
    q.model = ChannelEntropyModel(arrays["counts"])
    q._nch = q.model.num_channels
    if codec == "rounding":
        q.num_symbols = q.model.num_symbols
    return q


def load_or_fit_baselines(model, cfg: BenchConfig, out_dir: str, images, log) -> tuple:
    """({(codec, key): quantizer}, info) for the baseline codecs requested in cfg.

    info = {"fit_id", "fit_images", "train_dir", "header_bytes"}, None without baselines.
    fit_id hashes the model id, the code fingerprint, max_depth and the fitting files.
    """
    from ..codec import model_prior
    # blind2 uses blind's fit (sigma_c does not depend on the pass)
    fit_as = {"blind2": "blind"}
    wanted = sorted({(fit_as.get(c, c), v) for c in cfg.codecs if c in BASELINE_CODECS
                     for v in cfg.settings(c)})
    if not wanted:
        return {}, None
    train_dir = cfg.train_dir or default_train_dir()
    if train_dir is None or not os.path.isdir(train_dir):
        raise BenchError("the baselines are fitted on training images: pass --train-dir DIR "
                         "(or leave uniform,kmeans,blind,blind2,rounding out with --codecs)")
    files = fit_files(train_dir, cfg.fit_images)
    bench_real = {os.path.realpath(f) for f in images}
    clash = [f for f in files if os.path.realpath(f) in bench_real]
    if clash:
        raise BenchError(f"{clash[0]}: a benchmark image is also in the fitting set")
    basis = {"model_id": model.model_id, "code": code_fingerprint(), "max_depth": cfg.max_depth,
             "train_dir": os.path.abspath(train_dir),
             "files": [os.path.relpath(f, train_dir) for f in files]}
    fit_id = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]
    prior = model_prior(model)
    npz_path = os.path.join(out_dir, "baselines.npz")
    manifest_path = os.path.join(out_dir, "baselines.json")
    manifest = _read_json(manifest_path)
    cached = {}
    if manifest and manifest.get("fit_id") == fit_id and os.path.isfile(npz_path):
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        for c, v in wanted:
            key = f"{c}/{setting_key(c, v)}"
            fields = _STATE[c] + ("counts",)
            if all(f"{key}/{f}" in arrays for f in fields):
                cached[(c, setting_key(c, v))] = _restore(
                    c, v, {f: arrays[f"{key}/{f}"] for f in fields}, prior, cfg.max_depth)
    else:
        arrays = {}
    missing = [(c, v) for c, v in wanted if (c, setting_key(c, v)) not in cached]
    if missing:
        log(f"fitting {len(missing)} baseline settings on {len(files)} training images "
            f"from {train_dir}")
        t0 = time.time()
        mu, sigma = _training_latents(model, files, log)                   # (M, n) each
        log(f"  posterior of the fitting set: {mu.shape[1]} positions x {mu.shape[0]} channels "
            f"({time.time() - t0:.0f} s)")
        for i, (c, v) in enumerate(missing):
            q = _quantizer(c, v, prior, cfg.max_depth)
            q.fit(mu, sigma) if c == "blind" else q.fit(mu)
            key = setting_key(c, v)
            cached[(c, key)] = q
            for f, arr in _state_arrays(c, q).items():
                arrays[f"{c}/{key}/{f}"] = arr
            log(f"  fitted {c} {key} ({i + 1}/{len(missing)}, {time.time() - t0:.0f} s)")
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        from ..imageio import atomic_write
        atomic_write(npz_path, buf.getvalue(), overwrite=True)
        _write_json(manifest_path, dict(basis, fit_id=fit_id, fit_images=len(files),
                                        positions_per_channel=int(mu.shape[1]),
                                        settings=sorted({k.rsplit("/", 1)[0] for k in arrays})))
    info = {"fit_id": fit_id, "fit_images": len(files), "train_dir": os.path.abspath(train_dir),
            "header_bytes": BASELINE_HEADER_BYTES}
    return cached, info


def _training_latents(model, files, log):
    from ..imageio import read_image, to_rgb_float
    mus, sigmas = [], []
    for i, f in enumerate(files):
        mu, sigma = model.analysis(to_rgb_float(read_image(f)))         # (M, h, w) float32
        mus.append(mu.reshape(mu.shape[0], -1))
        sigmas.append(sigma.reshape(sigma.shape[0], -1))
        if (i + 1) % 10 == 0 or i + 1 == len(files):
            log(f"  posterior {i + 1}/{len(files)}")
    return np.concatenate(mus, axis=1), np.concatenate(sigmas, axis=1)  # (M, n) each


# ---------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------
def _metrics(ref, rec, nbytes, height, width) -> dict:
    """bytes, bpp, psnr, ms_ssim (None for images below 161 px on a side)."""
    try:
        ms = evaluate.ms_ssim(ref, rec)
    except ValueError:
        ms = None
    return {"bytes": int(nbytes), "bpp": evaluate.bpp(nbytes, height, width),
            "psnr": _finite_or_none(evaluate.psnr(ref, rec)), "ms_ssim": _finite_or_none(ms)}


# The modules whose code decides the bytes and pixels of the latent codecs: any edit
# to them invalidates cached measurements and fitted baselines (during development
# the entropy model changes without a format version bump).
_CODE_MODULES = ("codec", "bitstream", "entropy_model", "rangecoder", "intmodels", "vbq",
                 "priors", "bench/baselines", "model", "g_a", "g_s", "layers")


def code_fingerprint() -> str:
    """sha256 (16 hex digits) of the source of _CODE_MODULES."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # bac_ref/
    for name in _CODE_MODULES:
        with open(os.path.join(here, name + ".py"), "rb") as fh:
            h.update(name.encode() + b"\0" + fh.read())
    return h.hexdigest()[:16]


def _provenance(codec, model, fit_id, cfg) -> str:
    if codec in PILLOW_FORMATS:
        PIL, _, features = _pillow()
        lib = {"jpeg": "libjpeg_turbo", "webp": "webp", "avif": "avif"}[codec]
        return f"Pillow {PIL.__version__}, {lib} {features.version(lib) or '?'}"
    text = f"model {model.model_id[:16]}, code {code_fingerprint()}"
    if codec in ("vbq", "vbq2"):
        return text + f", max_depth {cfg.max_depth}"
    if codec in BLIND_CODECS:
        return text + f", fit {fit_id}, coded as .bac"
    return text + f", fit {fit_id}"


class _ImageJob:
    """The measurements of one image, computed lazily and saved after every codec."""

    def __init__(self, path, out_dir, model, cfg, quantizers, fit_id, log):
        from ..codec import as_float_image, to_pixels
        from ..imageio import read_image
        self.path, self.model, self.cfg, self.log = path, model, cfg, log
        self.quantizers = quantizers
        self.name = os.path.basename(path)
        self.json_path = os.path.join(out_dir, "images", os.path.splitext(self.name)[0] + ".json")
        self.img = read_image(path)
        x, self.grey = as_float_image(self.img)
        self.height, self.width = x.shape[:2]
        ref = to_pixels(x, self.grey)
        self.ref = np.repeat(ref[:, :, None], 3, axis=2) if ref.ndim == 2 else ref   # (H, W, 3)
        self._analysed = None
        sha = sha256_file(path)
        old = _read_json(self.json_path)
        if not (old and old.get("version") == RESULT_VERSION and old.get("sha256") == sha):
            old = {"results": {}, "provenance": {}}
        self.record = {"version": RESULT_VERSION, "image": self.name,
                       "path": os.path.abspath(path), "sha256": sha,
                       "height": self.height, "width": self.width,
                       "results": {}, "provenance": {}}
        for codec in cfg.codecs:
            prov = _provenance(codec, model, fit_id, cfg) if codec in PILLOW_FORMATS or model else None
            self.record["provenance"][codec] = prov
            if old["provenance"].get(codec) == prov:
                self.record["results"][codec] = dict(old["results"].get(codec, {}))
            else:
                self.record["results"][codec] = {}
        for codec, prev in old["results"].items():         # keep codecs not asked for this time
            if codec not in self.record["results"]:
                self.record["results"][codec] = prev
                self.record["provenance"][codec] = old["provenance"].get(codec)

    def missing(self, codec) -> list:
        done = self.record["results"][codec]
        return [v for v in self.cfg.settings(codec) if setting_key(codec, v) not in done]

    @property
    def analysed(self):
        if self._analysed is None:
            from ..codec import Encoder
            self._analysed = Encoder(self.img, self.model, self.cfg.max_depth)
        return self._analysed

    def blind_analysed(self, sigma_c):
        """The encoder's view of this image with every sigma := its channel's sigma_c."""
        blind = copy.copy(self.analysed)
        blind.sigma = np.ascontiguousarray(
            np.broadcast_to(np.asarray(sigma_c, dtype=np.float64)[:, None, None], blind.mu.shape))
        return blind

    def _synth(self, zhat):
        from ..codec import to_pixels
        x_hat = self.model.synthesis(zhat.astype(np.float32), size=(self.height, self.width))
        pix = to_pixels(x_hat, self.grey)
        return np.repeat(pix[:, :, None], 3, axis=2) if pix.ndim == 2 else pix

    def run_codec(self, codec) -> int:
        todo = self.missing(codec)
        for v in todo:
            t0 = time.perf_counter()
            if codec in ("vbq", "vbq2"):
                full = codec == "vbq2"                   # vbq: the first pass alone
                enc = self.analysed.encode(v, second_pass=full, context_pass=full)
                nbytes, rec = len(enc.data), self._synth(enc.zhat)
            elif codec in BLIND_CODECS:
                q = self.quantizers[("blind", setting_key("blind", v))]
                full = codec == "blind2"
                enc = self.blind_analysed(q.sigma_c).encode(v, second_pass=full, context_pass=full)
                nbytes, rec = len(enc.data), self._synth(enc.zhat)
            elif codec in BASELINE_CODECS:
                q = self.quantizers[(codec, setting_key(codec, v))]
                r = q.quantize(self.analysed.mu)                            # sigma unused by all three
                nbytes = len(q.encode(r.symbols)) + BASELINE_HEADER_BYTES
                rec = self._synth(r.zhat)
            else:
                nbytes, rec = self._pillow_codec(codec, v)
            entry = {PARAM_NAME[codec]: v}
            entry.update(_metrics(self.ref, rec, nbytes, self.height, self.width))
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            self.record["results"][codec][setting_key(codec, v)] = entry
        if todo:
            self.save()
        return len(todo)

    def _pillow_codec(self, codec, quality):
        _, Image, _ = _pillow()
        buf = io.BytesIO()
        Image.fromarray(self.ref, "RGB").save(buf, PILLOW_FORMATS[codec], quality=int(quality))
        data = buf.getvalue()
        with Image.open(io.BytesIO(data)) as im:
            rec = np.asarray(im.convert("RGB"))
        return len(data), rec

    def save(self):
        _write_json(self.json_path, self.record)


# ---------------------------------------------------------------------------
# Summary: means, BD numbers, Markdown, plot
# ---------------------------------------------------------------------------
def _mean_curves(records, cfg, codecs) -> dict:
    """codec -> list of mean points over the images (settings present for every image)."""
    curves = {}
    for codec in codecs:
        pts = []
        for v in cfg.settings(codec):
            key = setting_key(codec, v)
            entries = [r["results"].get(codec, {}).get(key) for r in records]
            if not entries or any(e is None for e in entries):
                continue
            ms = [e["ms_ssim"] for e in entries]
            pts.append({PARAM_NAME[codec]: v,
                        "bytes": float(np.mean([e["bytes"] for e in entries])),
                        "bpp": float(np.mean([e["bpp"] for e in entries])),
                        "psnr": _finite_or_none(float(np.mean([e["psnr"] for e in entries]))
                                                if all(e["psnr"] is not None for e in entries)
                                                else None),
                        "ms_ssim": None if any(m is None for m in ms) else float(np.mean(ms)),
                        "seconds": float(np.mean([e["seconds"] for e in entries]))})
        curves[codec] = pts
    return curves


def _curve_xy(points, metric="psnr"):
    pts = [p for p in points if p[metric] is not None]
    return np.array([p["bpp"] for p in pts]), np.array([p[metric] for p in pts])


def _bd_table(curves, records, cfg) -> dict:
    """BD-rate / BD-PSNR of every codec against jpeg (mean curves; also mean of per-image values)."""
    if not curves.get("jpeg"):
        return {}
    ra, qa = _curve_xy(curves["jpeg"])
    out = {}
    for codec, pts in curves.items():
        if codec == "jpeg" or not pts:
            continue
        rt, qt = _curve_xy(pts)
        row = {}
        for method in ("pchip", "cubic"):
            row[f"bd_rate_{method}"] = _finite_or_none(evaluate.bd_rate(ra, qa, rt, qt, method))
            row[f"bd_psnr_{method}"] = _finite_or_none(evaluate.bd_psnr(ra, qa, rt, qt, method))
        per = []
        for r in records:
            jp = [r["results"]["jpeg"].get(setting_key("jpeg", v)) for v in cfg.settings("jpeg")]
            te = [r["results"][codec].get(setting_key(codec, v)) for v in cfg.settings(codec)]
            jp = [e for e in jp if e and e["psnr"] is not None]
            te = [e for e in te if e and e["psnr"] is not None]
            per.append(evaluate.bd_rate([e["bpp"] for e in jp], [e["psnr"] for e in jp],
                                        [e["bpp"] for e in te], [e["psnr"] for e in te]))
        per = [p for p in per if math.isfinite(p)]
        row["bd_rate_pchip_per_image_mean"] = float(np.mean(per)) if per else None
        row["bd_rate_pchip_images"] = len(per)
        ms_t = _curve_xy(pts, "ms_ssim")
        ms_a = _curve_xy(curves["jpeg"], "ms_ssim")
        row["bd_rate_ms_ssim_pchip"] = (_finite_or_none(evaluate.bd_rate(*ms_a, *ms_t))
                                        if ms_a[0].size and ms_t[0].size else None)
        out[codec] = row
    return out


# The paper's Balle 2017 rates, and round rates, at which the summary reads every curve.
FIXED_RATES = (0.106, 0.174, 0.25, 0.286, 0.455, 0.5, 0.709, 1.0)


def psnr_at(points, rate: float):
    """PSNR of a mean curve at ``rate`` bpp: linear in log(bpp) between the two Pareto
    points around it; None outside the curve's range."""
    r, q = evaluate.pareto_front(*_curve_xy(points))
    if r.size == 0 or not r[0] <= rate <= r[-1]:
        return None
    return float(np.interp(math.log(rate), np.log(r), q))


def _psnr_at_rates(curves) -> dict:
    return {codec: {f"{rate:g}": psnr_at(pts, rate) for rate in FIXED_RATES}
            for codec, pts in curves.items() if pts}


def _fmt(v, spec, unit=""):
    return "-" if v is None else format(v, spec) + unit


def markdown(summary) -> str:
    s = summary
    lines = [f"# Rate-distortion benchmark ({len(s['images'])} images)", "",
             f"Model `{s['model']['file']}` (id {s['model']['id'][:16]}, "
             f"{s['model']['steps']} training steps); images: {', '.join(s['images'])}.",
             "Means over images of bpp (whole files), PSNR (dB, RGB uint8) and MS-SSIM "
             "(RGB, per-channel mean; '-' for images under 161 px).",
             f"Baseline sizes = range-coder payload + {BASELINE_HEADER_BYTES} bytes "
             "(a .bac header's worth); their tables are not counted. "
             + (f"Fitted on {s['baselines']['fit_images']} training images "
                f"(fit {s['baselines']['fit_id']})." if s.get("baselines") else ""), ""]
    if s["bd_vs_jpeg"]:
        lines += ["## BD-rate / BD-PSNR against JPEG (mean curves)", "",
                  "| codec | BD-rate PCHIP | BD-PSNR PCHIP | BD-rate cubic | BD-PSNR cubic "
                  "| BD-rate per image (mean) | BD-rate MS-SSIM |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for codec, r in s["bd_vs_jpeg"].items():
            lines.append(f"| {codec} | {_fmt(r['bd_rate_pchip'], '+.1f', '%')} | "
                         f"{_fmt(r['bd_psnr_pchip'], '+.2f', ' dB')} | "
                         f"{_fmt(r['bd_rate_cubic'], '+.1f', '%')} | "
                         f"{_fmt(r['bd_psnr_cubic'], '+.2f', ' dB')} | "
                         f"{_fmt(r['bd_rate_pchip_per_image_mean'], '+.1f', '%')} "
                         f"({r['bd_rate_pchip_images']} img) | "
                         f"{_fmt(r['bd_rate_ms_ssim_pchip'], '+.1f', '%')} |")
        lines += ["", "Negative BD-rate: fewer bits than JPEG at equal quality (overlapping "
                  "quality range only; '-': no overlap).", ""]
    if s.get("psnr_at_rates"):
        balle = {f"{r:g}": q for r, q in PAPER_BALLE2017}
        codecs = list(s["psnr_at_rates"])
        lines += ["## PSNR (dB) at fixed rates", "",
                  "| bpp | " + " | ".join(codecs) + " | Balle 2017 (paper) |",
                  "|---:|" + "---:|" * (len(codecs) + 1)]
        for rate in FIXED_RATES:
            key = f"{rate:g}"
            lines.append(f"| {key} | " + " | ".join(_fmt(s["psnr_at_rates"][c][key], ".2f")
                                                  for c in codecs)
                         + f" | {_fmt(balle.get(key), '.2f')} |")
        lines += ["", "Mean curves read at each rate, linear in log(bpp) between Pareto points; "
                  "'-': outside the curve. Balle 2017: the paper's table (one model per rate).", ""]
    lines += ["## Mean results", "", "| codec | setting | bpp | PSNR (dB) | MS-SSIM | s / setting |",
              "|---|---|---:|---:|---:|---:|"]
    for codec, pts in s["mean"].items():
        for p in pts:
            name = PARAM_NAME[codec]
            lines.append(f"| {codec} | {name}={p[name]:g} | {p['bpp']:.4f} | "
                         f"{_fmt(p['psnr'], '.2f')} | {_fmt(p['ms_ssim'], '.4f')} | "
                         f"{p['seconds']:.2f} |")
    if s.get("skipped"):
        lines += [""] + [f"Skipped: {c} ({why})" for c, why in s["skipped"].items()]
    return "\n".join(lines) + "\n"


LEGEND = {"vbq2": "vbq2: VBQ, the codec's default (2nd + context pass)",
          "vbq": "vbq: VBQ, first pass only",
          "blind": "blind: VBQ without sigma (1st pass)",
          "blind2": "blind2: VBQ without sigma (2nd + context pass)"}


def plot(summary, path) -> bool:
    """rd.png: PSNR and MS-SSIM vs bpp; False (with a warning by the caller) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    styles = {"vbq": ("C3", "o", 2.2), "vbq2": ("C9", "o", 2.2), "jpeg": ("C0", "s", 1.4),
              "webp": ("C2", "^", 1.2),
              "avif": ("C4", "v", 1.2), "uniform": ("C5", "<", 1.0), "kmeans": ("C6", ">", 1.0),
              "blind": ("C1", "D", 1.4), "blind2": ("C8", "d", 1.4),
              "rounding": ("C7", "x", 1.0)}
    xmax = 2.5
    for ax, metric in zip(axes, ("psnr", "ms_ssim")):
        for codec, pts in summary["mean"].items():
            r, q = _curve_xy(pts, metric)
            if r.size:
                colour, marker, lw = styles.get(codec, ("k", ".", 1.0))
                order = np.argsort(r)
                ax.plot(r[order], q[order], marker=marker, color=colour, lw=lw, ms=4,
                        label=LEGEND.get(codec, codec))
        if metric == "psnr":
            jr, jq = zip(*PAPER_JPEG.values())
            ax.plot(jr, jq, "k+", ms=10, mew=1.5, label="JPEG (paper)")
            br, bq = zip(*PAPER_BALLE2017)
            ax.plot(br, bq, "k*", ms=9, label="Balle 2017 (paper)")
            ax.set_ylabel("PSNR (dB, RGB)")
        else:
            for (label, pts_), m in zip(PAPER_MS_SSIM.items(), ("k+", "k*")):
                ax.plot(*zip(*pts_), m, ms=10, label=f"{label} (paper)")
            ax.set_ylabel("MS-SSIM (RGB)")
        ax.set_xlim(0, xmax)
        ax.set_xlabel("bits per pixel")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    ys = [p["psnr"] for pts in summary["mean"].values() for p in pts
          if p["psnr"] is not None and p["bpp"] <= xmax]
    if ys:
        axes[0].set_ylim(min(ys) - 1, max(max(ys), 38.5) + 1)
    fig.suptitle(f"{len(summary['images'])} images, model {summary['model']['file']} "
                 f"({summary['model']['steps']} steps)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from ..imageio import atomic_write
    atomic_write(path, buf.getvalue(), overwrite=True)
    return True


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------
def run(images, out_dir, cfg: BenchConfig | None = None, quiet: bool = False) -> dict:
    """Run (or resume) the benchmark; returns the summary written to DIR/results.json.

    summary["computed"] is how many (image, codec, setting) measurements this call made.
    """
    cfg = cfg or BenchConfig()
    log = _Log(quiet)
    unknown = [c for c in cfg.codecs if c not in CODECS]
    if unknown or not cfg.codecs:
        raise BenchError(f"unknown codec(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{','.join(CODECS)}")
    for c in cfg.codecs:
        if not cfg.settings(c):
            raise BenchError(f"no settings for {c}")
    if any(not 0 <= q <= 100 for q in cfg.qualities):
        raise BenchError("qualities must lie in 0..100")
    files = expand_images(images, cfg.limit)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    t_start = time.time()

    codecs, skipped = [], {}
    for c in cfg.codecs:
        if c in PILLOW_FORMATS:
            _, _, features = _pillow()
            if c != "jpeg" and not features.check(c):
                skipped[c] = f"this Pillow has no {c.upper()} support"
                log.warn(f"{c} skipped: {skipped[c]}")
                continue
        codecs.append(c)
    cfg = BenchConfig(**dict(asdict(cfg), codecs=tuple(codecs)))

    model = quantizers = fit_info = None
    if any(c in LATENT_CODECS for c in codecs):
        from ..codec import get_model
        model = get_model(cfg.model)
        quantizers, fit_info = load_or_fit_baselines(model, cfg, out_dir, files, log)
    fit_id = fit_info["fit_id"] if fit_info else None

    records, computed = [], 0
    for i, f in enumerate(files):
        job = _ImageJob(f, out_dir, model, cfg, quantizers, fit_id, log)
        todo = sum(len(job.missing(c)) for c in codecs)
        if todo == 0:
            log(f"[{i + 1}/{len(files)}] {job.name}: done before, skipped")
        else:
            t0 = time.time()
            for c in codecs:
                n = job.run_codec(c)
                if n:
                    log(f"[{i + 1}/{len(files)}] {job.name}: {c} {n} settings "
                        f"({time.time() - t0:.0f} s)")
            computed += todo
            job.save()
        records.append(job.record)

    curves = _mean_curves(records, cfg, codecs)
    summary = {
        "version": RESULT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "images": [r["image"] for r in records],
        "model": ({"file": os.path.basename(str(model.path)), "id": model.model_id,
                   "steps": model.meta.get("steps"), "code": code_fingerprint()}
                  if model is not None
                  else {"file": "-", "id": "-", "steps": None}),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
                   if k != "plot"},
        "notes": {"bpp": "8 * file bytes / (H * W); mean over images",
                  "psnr": "10 log10(255^2 / MSE), RGB uint8; mean over images",
                  "ms_ssim": "Wang 2003, 5 scales, per RGB channel then averaged "
                             "(pytorch_msssim semantics); null under 161 px",
                  "baseline_bytes": f"range-coder payload + {BASELINE_HEADER_BYTES} "
                                    "(a .bac header equivalent); tables not counted",
                  "vbq_bytes": "whole .bac file, header included",
                  "bd": "Bjontegaard vs jpeg on the mean curves, Pareto points only; "
                        "pchip (default) and cubic polynomial"},
        "baselines": fit_info,
        "skipped": skipped,
        "mean": curves,
        "bd_vs_jpeg": _bd_table(curves, records, cfg),
        "psnr_at_rates": _psnr_at_rates(curves),
        "per_image": {r["image"]: {c: r["results"].get(c, {}) for c in codecs} for r in records},
        "computed": computed,
        "seconds": round(time.time() - t_start, 1),
    }
    _write_json(os.path.join(out_dir, "results.json"), summary)
    from ..imageio import atomic_write
    atomic_write(os.path.join(out_dir, "results.md"), markdown(summary).encode(), overwrite=True)
    if cfg.plot:
        if plot(summary, os.path.join(out_dir, "rd.png")):
            log(f"wrote {os.path.join(out_dir, 'rd.png')}")
        else:
            log.warn(f"matplotlib is not installed: rd.png not written ({BENCH_EXTRA_HINT})")
    log(f"{computed} measurements in {summary['seconds']:.0f} s; results in {out_dir}")
    return summary


# ---------------------------------------------------------------------------
# Command line (wired into bac_ref.cli as the ``bench`` subcommand)
# ---------------------------------------------------------------------------
def _number_list(kind):
    def parse(text):
        try:
            values = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"not a comma-separated list of numbers: {text!r}") from None
        if not values or any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError(f"need positive numbers: {text!r}")
        return values
    parse.__name__ = f"{kind.__name__} list"
    return parse


def add_arguments(p) -> None:
    """The ``bench`` options (used by bac_ref.cli.build_parser)."""
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files or folders (their *.png / *.jpg, sorted)")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (resumed if present)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N images")
    p.add_argument("--codecs", default=",".join(CODECS), metavar="LIST",
                   help=f"comma-separated subset of {','.join(CODECS)} (default: all)")
    p.add_argument("--lambdas", type=_number_list(float), default=DEFAULT_LAMBDAS, metavar="L,...",
                   help="VBQ and blind-VBQ lambdas (default 2^linspace(-3, 9, 13))")
    p.add_argument("--qualities", type=_number_list(int), default=DEFAULT_QUALITIES, metavar="Q,...",
                   help="JPEG/WebP/AVIF qualities (default "
                        f"{','.join(map(str, DEFAULT_QUALITIES))})")
    p.add_argument("--levels", type=_number_list(int), default=DEFAULT_LEVELS, metavar="N,...",
                   help=f"uniform levels and k-means k (default {','.join(map(str, DEFAULT_LEVELS))})")
    p.add_argument("--steps", type=_number_list(float), default=DEFAULT_STEPS, metavar="S,...",
                   help=f"integer-rounding steps (default {','.join(f'{s:g}' for s in DEFAULT_STEPS)})")
    p.add_argument("--train-dir", metavar="DIR",
                   help="training images for fitting the baselines (default ../shared/data/train)")
    p.add_argument("--fit-images", type=int, default=DEFAULT_FIT_IMAGES, metavar="N",
                   help=f"training images to fit the baselines on (default {DEFAULT_FIT_IMAGES})")
    p.add_argument("--model", metavar="PATH", help="model .npz file or name (default: shipped)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not write rd.png")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def cmd_bench(args) -> int:
    """``bac-ref bench``: run, then print the Markdown summary on stdout."""
    if args.limit < 0 or args.fit_images < 1:
        raise BenchError("--limit must be >= 0 and --fit-images >= 1")
    cfg = BenchConfig(codecs=tuple(c.strip() for c in args.codecs.split(",") if c.strip()),
                      lambdas=tuple(args.lambdas), qualities=tuple(args.qualities),
                      levels=tuple(args.levels), steps=tuple(args.steps),
                      train_dir=args.train_dir, fit_images=args.fit_images, model=args.model,
                      plot=args.plot, limit=args.limit)
    summary = run(args.images, args.out, cfg, quiet=args.quiet)
    print(markdown(summary), end="", flush=True)
    return 0
