"""Benchmark: NumPy g_a + g_s (bac_ref.model) against PyTorch CPU, same weights, same machine.

    python -m bac_ref.bench.bench_transforms [--model PATH] [--threads T] [--repeats R]

Weights: --model, else runs/vae/model.npz when it exists, else random weights at N = M = 128.
Image: random, 768 x 512 (W x H, the Kodak size) unless --width/--height say otherwise.
Reports per-pass times (NumPy and PyTorch measured back to back, alternately, so machine load
hits both alike), their ratio (target: NumPy <= 1.5x PyTorch), the largest output difference,
and the NumPy pass's peak memory: tracemalloc's peak of Python/NumPy allocations during one
g_a + g_s pass, and the process's maximum RSS (getrusage) before PyTorch is imported.
--threads sets OPENBLAS/OMP/MKL_NUM_THREADS (before NumPy loads) and torch.set_num_threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a .npz model file (default: runs/vae/model.npz or random)")
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS / PyTorch threads (default: the libraries' own default)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-torch", action="store_true", help="time NumPy only")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import resource
    import tracemalloc

    import numpy as np

    import bac_ref
    from bac_ref.weights import PARAM_LAYOUT, export_npz

    tmpdir = tempfile.TemporaryDirectory()
    path = args.model
    if path is None and os.path.isfile(os.path.join(ROOT, "runs", "vae", "model.npz")):
        path = os.path.join(ROOT, "runs", "vae", "model.npz")
    if path is None:
        rng = np.random.default_rng(0)
        arrays = {}
        for name, shape_of in PARAM_LAYOUT.items():
            shape = shape_of(128, 128)
            if name.endswith(".beta"):
                a = rng.uniform(0.5, 1.5, shape)
            elif name.endswith(".gamma"):
                a = rng.uniform(0, 0.2, shape) / 128 ** 0.5
            elif name.endswith(".bias"):
                a = 0.1 * rng.standard_normal(shape)
            else:
                a = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
            arrays[name] = a.astype(np.float32)
        path = os.path.join(tmpdir.name, "random-n128.npz")
        export_npz(path, arrays, {"architecture": "bmshj2017-gaussian-vae", "N": 128, "M": 128})
        label = "random weights, N = M = 128"
    else:
        label = path
    model = bac_ref.load_model(path)
    x = np.random.default_rng(1).random((args.height, args.width, 3), dtype=np.float32)
    size = x.shape[:2]

    def numpy_pass():
        mu, sigma = model.analysis(x)
        return mu, sigma, model.synthesis(mu, size=size)

    numpy_pass()                                                    # warm-up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    mu, sigma, x_hat = numpy_pass()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {label} (N={model.N}, M={model.M}, id {model.model_id[:16]})")
    print(f"image: {args.width} x {args.height}; cpus {os.cpu_count()}; threads "
          f"{args.threads or 'library default'}; numpy {np.__version__}")
    print(f"NumPy peak memory: tracemalloc {peak / 2**20:.1f} MiB; max RSS {rss_after:.0f} MiB "
          f"(was {rss_before:.0f} MiB after loading and one warm-up pass)")

    torch_pass = None                         # stays None without PyTorch
    if not args.no_torch:
        try:
            import torch
            from bac_ref.training.train import GaussianVAE
        except ImportError:
            print("PyTorch not installed: NumPy timings only")
        else:
            if args.threads:
                torch.set_num_threads(args.threads)
            vae = GaussianVAE(model.N, model.M).eval()
            vae.load_effective_params({k: v.copy() for k, v in model.params.items()})

            @torch.inference_mode()
            def torch_pass():
                t = torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()
                m_t, lv_t = vae.analysis(t)
                return m_t[0].numpy(), torch.exp(0.5 * lv_t[0]).numpy(), \
                    vae.synthesis(m_t)[0].permute(1, 2, 0).contiguous().numpy()

            outs = torch_pass()
            diffs = [float(np.abs(a - b).max()) for a, b in zip((mu, sigma, x_hat), outs)]
            print(f"max |numpy - torch|: mu {diffs[0]:.2e}, sigma {diffs[1]:.2e}, "
                  f"x_hat {diffs[2]:.2e}; torch threads {torch.get_num_threads()}")

    t_np, t_pt = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        numpy_pass()
        t_np.append(time.perf_counter() - t0)
        if torch_pass is not None:
            t0 = time.perf_counter()
            torch_pass()
            t_pt.append(time.perf_counter() - t0)
    med = lambda v: float(np.median(v))  # noqa: E731
    print(f"NumPy  g_a+g_s: median {med(t_np) * 1e3:7.1f} ms, min {min(t_np) * 1e3:7.1f} ms "
          f"({args.repeats} passes)")
    if t_pt:
        print(f"PyTorch g_a+g_s: median {med(t_pt) * 1e3:7.1f} ms, min {min(t_pt) * 1e3:7.1f} ms")
        print(f"ratio NumPy / PyTorch: median {med(t_np) / med(t_pt):.2f}, "
              f"min {min(t_np) / min(t_pt):.2f} (target <= 1.5)")
    tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
