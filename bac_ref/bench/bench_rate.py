"""Real .bac sizes against the paper's rate estimate, per lambda, on a folder of images.

    python -m bac_ref.bench.bench_rate [--images DIR] [--lams 0.3,1,3,10,30,100]
                                            [--second-pass] [--context-pass] [--json OUT]

For every image and lambda: compress (real bytes, header included), decode,
check that the decoded symbols equal the encoder's and that zhat is
bit-identical, and compare the size with the paper's estimate (sum of -log2
per-channel empirical frequencies of the grid point, fitted on the same image,
tables free: ``entropy_model.paper_rate_estimate``).  Prints one row per
lambda: mean bpp, size ratio (total bytes / total estimate), worst per-image
ratio, the mean PSNR, and what the payload spends its bits on: the share of
the depth symbols (which grid level each latent uses: a cost the paper's
objective does not price) against the index bits (the grid point at that
depth), from ``spec_entropy_model.cost_by_kind``.  Kodak is a test set: this
script only measures.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

from .. import codec, entropy_model
from ..conformance import spec_walk as spec_entropy_model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=os.path.join("..", "shared", "data", "kodak"))
    p.add_argument("--lams", default="0.1,0.3,1,3,10,30,100")
    p.add_argument("--model", default=None)
    p.add_argument("--second-pass", action="store_true")
    p.add_argument("--context-pass", action="store_true", help="the context pass (SPEC.md §5.6)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images")
    p.add_argument("--json", default=None, help="write per-image results here")
    args = p.parse_args(argv)
    files = sorted(glob.glob(os.path.join(args.images, "*.png"))
                   + glob.glob(os.path.join(args.images, "*.jpg")))
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no PNG images in {args.images}", file=sys.stderr)
        return 2
    lams = [float(v) for v in args.lams.split(",")]
    model = codec.get_model(args.model)
    rows = {lam: [] for lam in lams}
    mismatches = 0
    t0 = time.time()
    for i, f in enumerate(files):
        a = codec.Encoder(f, model, codec.DEFAULT_MAX_DEPTH)
        for lam in lams:
            enc = a.encode(lam, second_pass=args.second_pass, context_pass=args.context_pass)
            dec = codec.decompress_details(enc.data, model)
            same = (np.array_equal(dec.depth, enc.depth) and np.array_equal(dec.index, enc.index)
                    and np.array_equal(dec.zhat.view(np.uint64), enc.zhat.view(np.uint64)))
            mismatches += not same
            est = entropy_model.paper_rate_estimate(enc.depth, enc.index, codec.DEFAULT_MAX_DEPTH)
            cost = spec_entropy_model.cost_by_kind(enc.depth, enc.index, codec.DEFAULT_MAX_DEPTH)
            rows[lam].append({"image": os.path.basename(f), "bytes": len(enc.data),
                              "bpp": enc.bpp, "estimate_bits": est,
                              "ratio": 8 * len(enc.data) / est if est else float("nan"),
                              "psnr": codec.psnr(a.pixels(), dec.pixels), "roundtrip_exact": same,
                              "ideal_bits_by_kind": cost, "sum_depth": int(enc.depth.sum())})
        print(f"\r{i + 1}/{len(files)} images ({time.time() - t0:.0f} s)", end="",
              file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"model {os.path.basename(str(model.path))} (steps {model.meta.get('steps')}), "
          f"{len(files)} images from {args.images}, second pass: {args.second_pass}, "
          f"context pass: {args.context_pass}")
    print("| lambda | mean bpp | size / paper estimate | worst image | mean PSNR (dB) "
          "| depth symbols | index bits | sum of depths / index bits |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for lam in lams:
        r = rows[lam]
        ratio = 8 * sum(x["bytes"] for x in r) / sum(x["estimate_bits"] for x in r)
        kinds = {k: sum(x["ideal_bits_by_kind"][k] for x in r) for k in r[0]["ideal_bits_by_kind"]}
        ideal = sum(kinds.values())
        index_bits = kinds["bit"] + kinds["uniform"]
        print(f"| {lam:g} | {np.mean([x['bpp'] for x in r]):.4f} | {ratio:.4f} | "
              f"{max(x['ratio'] for x in r):.4f} | {np.mean([x['psnr'] for x in r]):.2f} | "
              f"{100 * kinds['depth'] / ideal:.0f} % | {100 * index_bits / ideal:.0f} % | "
              f"{sum(x['sum_depth'] for x in r) / index_bits:.2f} |")
    print("(depth symbols / index bits: shares of the payload's ideal bits, "
          "spec_entropy_model.cost_by_kind; the rest are the channel flags. The last column: "
          "the first pass's rate term, the sum of depths, over what the index bits really cost.)")
    print(f"round trips: {len(files) * len(lams) - mismatches} exact, {mismatches} mismatched "
          f"(symbols and zhat bits)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({str(k): v for k, v in rows.items()}, fh, indent=1)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
