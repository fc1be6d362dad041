"""Batches: the speed-up of ``--jobs N`` and how fast Ctrl-C stops one (issue 18).

    python -m bac_ref.bench.bench_batch [IMAGES...] [--copies 8] [--jobs 1 2]

Compresses the same set of files (default: 8 copies of data/kodim23.png in a temporary
folder) with ``bac-ref compress --out-dir`` at each --jobs value, as fresh processes,
and prints the wall time and the speed-up over --jobs 1 (each worker gets cores / N BLAS
threads).  Then starts a batch with the largest --jobs, sends SIGINT to the main process
once the first file is written, and prints how long it took to exit, its exit status,
how many files it had finished and whether any temporary file was left.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cmd(files, out, jobs):
    return [sys.executable, "-m", "bac_ref", "compress", *files, "--out-dir", out,
            "--jobs", str(jobs), "--force", "--no-psnr", "--quiet"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    from ..sample import find_demo_image
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          "(a speed-up needs idle cores: figures are rough when other processes run)")
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        srcs = args.images or [find_demo_image()] * args.copies
        for i, src in enumerate(srcs):
            dst = os.path.join(tmp, f"in{i:03d}{os.path.splitext(src)[1]}")
            shutil.copyfile(src, dst)
            files.append(dst)
        times = {}
        for jobs in args.jobs:
            out = os.path.join(tmp, f"out{jobs}")
            t0 = time.perf_counter()
            subprocess.run(_cmd(files, out, jobs), env=env, check=True)
            times[jobs] = time.perf_counter() - t0
            print(f"--jobs {jobs}: {len(files)} files in {times[jobs]:.1f} s "
                  f"(speed-up {times[min(times)] / times[jobs]:.2f}x over --jobs {min(times)})")
        jobs = max(args.jobs)
        out = os.path.join(tmp, "interrupted")
        proc = subprocess.Popen(_cmd(files, out, jobs), env=env, stderr=subprocess.PIPE,
                                text=True)
        while not (os.path.isdir(out) and any(f.endswith(".bac") for f in os.listdir(out))):
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
        stop = time.perf_counter() - t0
        names = os.listdir(out) if os.path.isdir(out) else []
        done = [n for n in names if n.endswith(".bac")]
        print(f"Ctrl-C (SIGINT to the main process) with --jobs {jobs}: exited after "
              f"{stop:.2f} s with status {proc.returncode}; {len(done)} of {len(files)} files "
              f"finished, {len(names) - len(done)} other files left "
              f"({'none partial' if len(names) == len(done) else 'PARTIAL FILES'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
