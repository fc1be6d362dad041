"""Wall time and peak memory of the codec on one photo (default data/kodim23.png).

    python -m bac_ref.bench.bench_codec [IMAGE] [--lam L] [--repeat 3]

Prints the median of ``repeat`` runs of compress (image array -> .bac bytes)
and decompress (.bac bytes -> uint8 pixels) with the model already loaded,
a breakdown by stage, and the peak resident memory of a fresh child process
doing one compress or one decompress (resource.getrusage ru_maxrss: the
interpreter, NumPy, the model and the codec's arrays).  Targets for a
768x512 photo: each <= 3 s, peak <= 1.5 GB.

    compress   = read -> analysis g_a -> quantize (VBQ, two passes) -> entropy coding -> header
    decompress = header -> entropy decoding -> dequantize F^-1 -> synthesis g_s -> round
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

TARGET_S = 3.0
TARGET_BYTES = 1.5e9


def _default_image() -> str:
    from ..sample import find_demo_image
    return find_demo_image()


def _median_time(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _child(mode: str, path: str, lam: float, model) -> None:
    """One compress (path: image) or decompress (path: .bac) in this fresh process.

    Prints its peak resident memory as JSON (ru_maxrss is in KiB on Linux).
    """
    from .. import codec
    from ..imageio import read_image
    if mode == "compress":
        codec.compress(read_image(path).pixels, lam, model=model)
    else:
        with open(path, "rb") as fh:
            codec.decompress(fh.read(), model)
    print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def _peak_bytes(mode: str, path: str, lam: float, model) -> int:
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"]
                                          if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "bac_ref.bench.bench_codec", path, "--lam", repr(lam),
           "--child", mode] + (["--model", model] if model else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])["maxrss_kb"] * 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", help="image file (default: data/kodim23.png)")
    ap.add_argument("--lam", type=float, default=3.0, help="lambda (default 3)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    ap.add_argument("--model", help="model file (default: the shipped model)")
    ap.add_argument("--child", choices=["compress", "decompress"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    image = args.image or _default_image()
    if args.child:
        _child(args.child, image, args.lam, args.model)
        return 0

    from .. import bitstream, codec, entropy_model, vbq
    from ..imageio import read_image

    t = time.perf_counter()
    model = codec.get_model(args.model)
    t_model = time.perf_counter() - t
    t_read, img = _median_time(lambda: read_image(image), args.repeat)
    pixels = img.pixels
    h, w = pixels.shape[:2]
    r = args.repeat

    t_comp, data = _median_time(lambda: codec.compress(pixels, args.lam, model=model), r)
    t_dec, out = _median_time(lambda: codec.decompress(data, model), r)

    # breakdown, stage by stage (same calls as codec.py)
    x, grey = codec.as_float_image(pixels)
    t_ana, (mu, sigma) = _median_time(lambda: model.analysis(x), r)
    a = codec.Encoder(pixels, model, codec.DEFAULT_MAX_DEPTH)
    t_q, q = _median_time(lambda: a.symbols(args.lam), r)          # both passes, as compress
    n = codec.DEFAULT_MAX_DEPTH
    t_enc, payload = _median_time(lambda: entropy_model.encode_symbols(q.depth, q.index, n), r)
    t_hdr, _ = _median_time(lambda: bitstream.parse(data), r)
    t_edec, (depth, index) = _median_time(
        lambda: entropy_model.decode_symbols(payload, q.depth.shape, n), r)
    t_deq, zhat = _median_time(lambda: vbq.dequantize(depth, index, codec.model_prior(model)), r)
    t_syn, x_hat = _median_time(lambda: model.synthesis(zhat.astype(np.float32), size=(h, w)), r)
    t_round, _ = _median_time(lambda: codec.to_pixels(x_hat, grey), r)

    peak_c = _peak_bytes("compress", image, args.lam, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        bac = os.path.join(tmp, "bench.bac")
        with open(bac, "wb") as fh:
            fh.write(data)
        peak_d = _peak_bytes("decompress", bac, args.lam, args.model)

    ok = lambda v, lim: "ok" if v <= lim else "OVER TARGET"              # noqa: E731
    print(f"bench_codec: {image} ({w}x{h}), lambda {args.lam:g}, model "
          f"{os.path.basename(str(model.path))} (M={model.M}), median of {r}")
    print(f"  {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, "
          f"PSNR {codec.psnr(codec.to_pixels(x, grey), out):.2f} dB")
    print(f"  compress    {t_comp:6.3f} s   (target <= {TARGET_S:g} s: {ok(t_comp, TARGET_S)})")
    print(f"    analysis g_a             {t_ana:6.3f} s")
    print(f"    quantize (VBQ, 3 passes)  {t_q:6.3f} s")
    print(f"    entropy coding           {t_enc:6.3f} s")
    print(f"  decompress  {t_dec:6.3f} s   (target <= {TARGET_S:g} s: {ok(t_dec, TARGET_S)})")
    print(f"    parse + CRC         {t_hdr:6.3f} s")
    print(f"    entropy decoding    {t_edec:6.3f} s")
    print(f"    dequantize F^-1     {t_deq:6.3f} s")
    print(f"    synthesis g_s       {t_syn:6.3f} s")
    print(f"    clip + round        {t_round:6.3f} s")
    print("  (stage medians are timed separately; the totals also convert the image, "
          "pack the header)")
    print(f"  not timed above: read image {t_read:.3f} s, load model {t_model:.3f} s (once)")
    print(f"  peak RSS, fresh process: compress {peak_c / 2**20:.0f} MiB, decompress "
          f"{peak_d / 2**20:.0f} MiB (target <= {TARGET_BYTES / 1e9:g} GB: "
          f"{ok(max(peak_c, peak_d), TARGET_BYTES)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
