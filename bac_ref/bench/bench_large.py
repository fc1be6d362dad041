"""12-megapixel photos: wall time, peak memory and the strip path's pixels (issue 18).

    python -m bac_ref.bench.bench_large [IMAGE] [--size 4000x3000] [--lam 3] [--check]

Without IMAGE, a 4000 x 3000 test photo is made from data/kodim23.png (2x upscaled, then
mirror-tiled: photo-like detail at every scale; written to a temporary folder, never to the
repository).  Each step runs as a fresh ``bac-ref`` child process, so the peak resident
memory (the child's VmHWM, Linux) is the whole command's:

    compress IMAGE x.bac --lam L --no-psnr -v      targets: <= 20 s, <= 600 MB (M = 128 model)
    decompress x.bac y.png -v                      targets: <= 8 s,  <= 600 MB

The children's --verbose stage times are printed too (g_a, VBQ, entropy coding /
decoding, g_s), which shows how much of the decode is the pure-Python entropy decoder.
``--check`` decodes once more with the whole-image path (strips switched off) and prints
the largest pixel difference (SPEC.md §10 allows 1) and whether the .bac bytes of a
whole-image compress equal the strip path's.  A 768 x 512 crop is timed the same way, for
the time per pixel.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = {"compress": (20.0, 600.0), "decompress": (8.0, 600.0)}


def make_photo(path: str, width: int, height: int) -> None:
    """kodim23 upscaled 2x (bilinear) and mirror-tiled to width x height, as a PNG."""
    from ..imageio import read_image, write_png
    from ..sample import find_demo_image
    x = read_image(find_demo_image()).pixels[:, :, :3].astype(np.float32)     # (512, 768, 3)
    h, w = x.shape[:2]
    yi = np.clip((np.arange(2 * h) - 0.5) / 2, 0, h - 1)
    xi = np.clip((np.arange(2 * w) - 0.5) / 2, 0, w - 1)
    y0, x0 = np.floor(yi).astype(int), np.floor(xi).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (yi - y0)[:, None, None], (xi - x0)[None, :, None]
    up = ((x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx) * (1 - fy)
          + (x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx) * fy)                # (2h, 2w, 3)
    tile = np.concatenate([up, up[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    big = np.tile(tile, reps)[:height, :width]
    write_png(path, np.rint(big).astype(np.uint8))


_WRAP = ("import sys, runpy\n"
         "sys.argv = ['bac-ref'] + sys.argv[1:]\n"
         "try:\n"
         "    from bac_ref.cli import main\n"
         "    code = main(sys.argv[1:])\n"
         "finally:\n"
         "    with open('/proc/self/status') as fh:\n"
         "        hwm = [ln.split()[1] for ln in fh if ln.startswith('VmHWM')]\n"
         "    sys.stderr.write(f'VMHWM_KB {hwm[0] if hwm else -1}\\n')\n"
         "sys.exit(code)\n")


def run_measured(argv, env=None):
    """Run ``bac-ref ARGV`` in a fresh interpreter: (seconds, peak RSS MB, stdout, stderr).

    The peak is the child's VmHWM (Linux /proc), read as it exits: the high-water mark of
    its own address space (ru_maxrss would also count the parent's pages before exec).
    """
    e = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _WRAP, *argv], env=e, capture_output=True,
                       text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bac-ref {' '.join(argv)} failed: {r.stderr.strip()}")
    kb = [int(ln.split()[1]) for ln in r.stderr.splitlines() if ln.startswith("VMHWM_KB")]
    return seconds, (kb[0] / 1024.0 if kb and kb[0] >= 0 else float("nan")), r.stdout, r.stderr


def stage_lines(err: str) -> list[str]:
    return [ln.strip() for ln in err.splitlines() if ln.startswith("  ") and ": " in ln
            and ("s" == ln.strip()[-1]) and "strip" not in ln]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", nargs="?", help="a large photo (default: made from kodim23)")
    p.add_argument("--size", default="4000x3000", help="size of the made photo (WxH)")
    p.add_argument("--lam", type=float, default=3.0)
    p.add_argument("--model", help="model file (default: the shipped one)")
    p.add_argument("--check", action="store_true",
                   help="also decode and encode with the whole-image path and compare")
    args = p.parse_args(argv)
    from ..imageio import read_image
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image
        if image is None:
            w, h = (int(v) for v in args.size.lower().split("x"))
            image = os.path.join(tmp, f"photo_{w}x{h}.png")
            t0 = time.perf_counter()
            make_photo(image, w, h)
            print(f"made {image} ({w} x {h}, kodim23 2x upscaled and mirror-tiled) in "
                  f"{time.perf_counter() - t0:.1f} s")
        img = read_image(image)
        npx = img.width * img.height
        model = ["--model", args.model] if args.model else []
        crop = os.path.join(tmp, "crop_768x512.png")
        from ..imageio import write_png
        write_png(crop, np.ascontiguousarray(img.pixels[:512, :768, :3]))
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
              "(figures are rough when other processes run)")
        per_px = {}
        for name, path in (("768x512 crop", crop), (f"{img.width}x{img.height}", image)):
            bac, png = os.path.join(tmp, "x.bac"), os.path.join(tmp, "y.png")
            tc, rc, out, err_c = run_measured(["compress", path, bac, "--lam", str(args.lam),
                                               "--no-psnr", "-v", "--force", *model])
            td, rd, _, err_d = run_measured(["decompress", bac, png, "-v", "--force", *model])
            n = 768 * 512 if name.startswith("768") else npx
            per_px[name] = (tc / n * 1e6, td / n * 1e6)
            print(f"\n{name}: {out.strip()}  (time includes starting Python and loading the model)")
            for what, t, r, err in (("compress", tc, rc, err_c), ("decompress", td, rd, err_d)):
                tt, tr = TARGETS[what]
                verdict = "" if n != npx else (
                    f"  [target <= {tt:g} s: {'met' if t <= tt else 'MISSED'}; "
                    f"<= {tr:g} MB: {'met' if r <= tr else 'MISSED'}]")
                print(f"  {what:<10} {t:7.2f} s  peak RSS {r:7.1f} MB  "
                      f"{t / n * 1e6:.2f} us/pixel{verdict}")
                for ln in stage_lines(err):
                    print(f"      {ln}")
        if args.check:
            bac, png = os.path.join(tmp, "x.bac"), os.path.join(tmp, "y.png")
            whole = {"BAC_REF_STRIP_PIXELS": str(1 << 40), "BAC_REF_GROUP_LATENTS": str(1 << 40)}
            code = ("import os, sys, numpy as np; from bac_ref import codec, tiling;"
                    "tiling.STRIP_PIXELS = int(os.environ.get('BAC_REF_STRIP_PIXELS', tiling.STRIP_PIXELS));"
                    "codec.GROUP_LATENTS = int(os.environ.get('BAC_REF_GROUP_LATENTS', codec.GROUP_LATENTS));"
                    "d = open(sys.argv[1], 'rb').read();"
                    "np.save(sys.argv[2], codec.decompress(d));"
                    "open(sys.argv[3], 'wb').write(codec.compress(sys.argv[4], float(sys.argv[5])))")
            outs = {}
            for label, env in (("strips", {}), ("whole", whole)):
                e = dict(os.environ, PYTHONPATH=REPO, **env)
                npy, b2 = os.path.join(tmp, f"{label}.npy"), os.path.join(tmp, f"{label}.bac")
                subprocess.run([sys.executable, "-c", code, bac, npy, b2, image, str(args.lam)],
                               env=e, check=True)
                outs[label] = (np.load(npy), open(b2, "rb").read())
            diff = np.abs(outs["strips"][0].astype(int) - outs["whole"][0].astype(int))
            print(f"\nwhole-image path vs strips: pixels differ by at most {diff.max()} "
                  f"({int((diff > 0).sum())} samples differ; SPEC.md §10 allows 1); .bac bytes "
                  f"{'identical' if outs['strips'][1] == outs['whole'][1] else 'DIFFER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
