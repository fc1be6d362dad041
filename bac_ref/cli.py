"""The command line: ``bac-ref`` (or ``python -m bac_ref``).

    bac-ref compress IN OUT.bac [--lam L | --bpp B | --psnr P]       one image
    bac-ref compress IN... --out-dir DIR [--jobs N]                  many images
    bac-ref decompress IN.bac OUT.png|.ppm|.pgm|.npy                 .bac -> image
    bac-ref info FILE.bac [--symbols OUT.npz]                        header, sizes, symbols
    bac-ref demo [--out DIR]                                         kodim23 at three rates
    bac-ref conform ...                                              bac_ref.conformance.runner, if present
    bac-ref bench IMAGES... --out DIR [--limit N] [--codecs ...]     RD benchmark (bac_ref.bench.rd)
    bac-ref embeddings --out DIR [--model NPZ] [--questions TXT]     word-embedding benchmark

Data flow (SPEC.md §8-§10; the work is done by :mod:`bac_ref.codec`)::

    IN --read_image--> ImageData --compress_details(lam)--> .bac bytes --atomic write--> OUT
    IN.bac --read--> bytes --decompress_details--> uint8 pixels --write_png--> OUT.png

Contract of every subcommand:

* exit 0 on success; 2 for bad input (unreadable or invalid image, a corrupted
  .bac file, a wrong or damaged model file, a bad option, an existing output
  without --force, a missing file); 1 for an unexpected bug.
* an error is exactly one line on stderr, ``bac-ref: error: <message>``; an
  unexpected bug adds a hint to rerun with ``BAC_REF_DEBUG=1`` (which prints
  the traceback too).
* outputs are written to a temporary file in the target folder and renamed into
  place: a failure never leaves a partial file, and an existing file is never
  replaced without --force.
* results go to stdout (to stderr when stdout carries the data, OUT = "-");
  progress (only for work that takes more than about 2 s: strips of a large
  image, steps of a rate search, files of a batch) and warnings go to stderr;
  --quiet silences the result line and progress, --verbose adds the seconds
  of every stage.
* "-" as IN or OUT is stdin / stdout; OUT is never IN (refused, also with
  --force); decompress writes the format OUT's extension names (.png,
  .ppm/.pgm/.pnm, .npy) and refuses any other.
* --jobs N runs N spawned workers with cores/N BLAS threads each; Ctrl-C
  terminates them at once (no partial file; finished files stay; exit 130).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import sys
import threading
import time
import traceback

PROG = "bac-ref"
DEFAULT_LAMBDA = 3.0
PROGRESS_DELAY = 2.0                 # seconds of work before progress is shown
DEMO_LAMBDAS = (10.0, 2.0, 0.1)      # kodim23: 0.127, 0.283, 1.018 bpp (160k-step model)
DEBUG_ENV = "BAC_REF_DEBUG"


class UsageError(ValueError):
    """A bad command line (exit 2)."""


# Expected failures: the user's input, not our bug (exit 2).
def _expected_errors():
    from .errors import BitstreamError, ModelFileError
    from .imageio import ImageFormatError
    return (BitstreamError, ModelFileError, ImageFormatError, ValueError, OSError)


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------
def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _describe(exc: BaseException) -> str:
    """One line for an expected error."""
    if isinstance(exc, FileExistsError):
        name = exc.filename or str(exc).split(": file exists")[0]
        return f"{name}: file exists (pass --force to replace it)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


class _Progress:
    """Progress lines on stderr, shown only once the work has taken PROGRESS_DELAY s.

    ``label`` ("compressing x.png") is printed by a timer thread when the work
    is still running after the delay; later ``step`` messages (the lambdas a
    rate search tries) are printed from then on.  ``quiet`` silences it all.
    """

    def __init__(self, label: str, quiet: bool, delay: float = PROGRESS_DELAY):
        self.label = label
        self.quiet = quiet
        self.shown = False
        self.last = None
        self._lock = threading.Lock()
        self._timer = None
        if not quiet:
            self._timer = threading.Timer(delay, self._show)
            self._timer.daemon = True
            self._timer.start()

    def _show(self):
        with self._lock:
            if not self.shown:
                self.shown = True
                print(f"{self.label} ...", file=sys.stderr, flush=True)
                if self.last:
                    print(f"  {self.last}", file=sys.stderr, flush=True)

    def step(self, message: str) -> None:
        with self._lock:
            self.last = message
            if self.shown:
                print(f"  {message}", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.done()


def _check_new(path: str, force: bool) -> None:
    """Refuse an existing output (before any work) unless --force."""
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory", path)
    if not force and os.path.lexists(path):
        raise FileExistsError(17, "file exists", path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "no such folder for the output", folder)


def atomic_write(path: str, data: bytes, force: bool = False) -> None:
    """Write ``data`` atomically; FileExistsError for an existing file without ``force``."""
    from .imageio import atomic_write as write
    write(path, data, overwrite=force)


from .sample import DEMO_IMAGE, demo_image_candidates, find_demo_image  # noqa: E402,F401


def _fmt_lam(lam) -> str:
    return f"{float(lam):.4g}"


# ---------------------------------------------------------------------------
# Paths: "-" is stdin / stdout
# ---------------------------------------------------------------------------
STDIO = "-"


def _same_file(a: str, b: str) -> bool:
    """True when paths a and b name one file (existing or not)."""
    if STDIO in (a, b):
        return False
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _refuse_same(src: str, dst: str) -> None:
    if _same_file(src, dst):
        raise UsageError(f"{dst}: the output is the input file; refusing to replace it "
                         "(also with --force)")


def _read_input(path: str) -> bytes:
    if path == STDIO:
        return sys.stdin.buffer.read()
    with open(path, "rb") as fh:
        return fh.read()


def _write_output(path: str, data: bytes, force: bool) -> None:
    if path == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        atomic_write(path, data, force)
    except FileExistsError:
        raise FileExistsError(17, "file exists", path) from None


def _result(line: str, quiet: bool, to_stderr: bool) -> None:
    """The one result line: stdout, or stderr when stdout carries the data; none if --quiet."""
    if not quiet:
        print(line, file=sys.stderr if to_stderr else sys.stdout, flush=True)


def _times(times: dict) -> None:
    """--verbose: the seconds of every stage, on stderr."""
    for stage, value in times.items():
        text = f"{value:.3f} s" if isinstance(value, float) else str(value)
        print(f"  {stage}: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# compress
# ---------------------------------------------------------------------------
def _rate_kwargs(args) -> dict:
    if args.bpp is not None:
        return {"bpp": args.bpp}
    if args.psnr is not None:
        return {"psnr": args.psnr}
    return {"lam": DEFAULT_LAMBDA if args.lam is None else args.lam}


def compress_file(src: str, dst: str, *, rate: dict, model=None, max_depth: int = 10,
                  second_pass: bool = True, context_pass: bool = True, force: bool = False,
                  quiet: bool = False, report_psnr: bool = True, show_progress: bool = True,
                  verbose: bool = False):
    """Compress one image file (or "-": stdin) to ``dst`` (or "-": stdout).

    Returns (summary line, warnings, stage times).  Raises the codec's errors
    (BitstreamError, ModelFileError, ImageFormatError, ValueError, OSError) for bad
    input.  Used by ``compress`` and its workers.
    """
    from . import codec
    from .imageio import decode_image

    _refuse_same(src, dst)
    if dst != STDIO:
        _check_new(dst, force)
    t0 = time.perf_counter()
    img = decode_image(_read_input(src), name="<stdin>" if src == STDIO else src)
    t_read = time.perf_counter() - t0
    warnings = []
    if img.has_alpha:
        warnings.append(f"{src}: the alpha channel is dropped (the codec stores RGB or grey)")
    if img.bit_depth == 16:
        warnings.append(f"{src}: {'float' if img.float_pixels is not None else '16-bit'} "
                        "samples are coded for 8-bit output (the decoder makes 8-bit pixels)")
    what = ", ".join(f"{k}={v:g}" for k, v in rate.items())
    name = "<stdin>" if src == STDIO else src
    with _Progress(f"compressing {name} ({what})", quiet or not show_progress) as prog:
        enc = codec.compress_details(img, model=model, max_depth=max_depth,
                                     second_pass=second_pass, context_pass=context_pass,
                                     progress=prog.step,
                                     measure_psnr=report_psnr, **rate)
        _write_output(dst, enc.data, force)
    times = dict({"read input": t_read}, **enc.times, total=time.perf_counter() - t0)
    base = os.path.basename
    line = (f"{base(name)} -> {base(dst) if dst != STDIO else '<stdout>'}: {len(enc.data)} bytes, "
            f"{enc.bpp:.3f} bpp, lambda {_fmt_lam(enc.header.lam)}")
    if enc.psnr is not None:
        line += f" (PSNR {enc.psnr:.2f} dB)"
    if enc.note:
        line += f"; {enc.note}"
    return line, warnings, times


def _compress_worker(task):
    """Pool task: (status, text, warnings, times); status 0 ok, 2 bad input, 1 bug, 3 skipped."""
    src, dst, kwargs = task
    try:
        line, warnings, times = compress_file(src, dst, **kwargs)
        return 0, line, warnings, times
    except _expected_errors() as exc:
        return 2, _prefixed(src, exc), [], {}
    except UsageError as exc:
        return 2, str(exc), [], {}
    except Exception as exc:                       # noqa: BLE001 - reported, not hidden
        detail = traceback.format_exc() if os.environ.get(DEBUG_ENV) == "1" else ""
        text = " ".join(str(exc).split())
        return 1, f"{src}: internal error: {type(exc).__name__}: {text}", \
            [detail] if detail else [], {}


def _prefixed(src: str, exc: BaseException) -> str:
    """The message, led by the input's name unless it names its own file already."""
    from .errors import ModelFileError
    text = _describe(exc)
    if src in text or isinstance(exc, (OSError, ModelFileError)):
        return text
    return f"{src}: {text}"


def cmd_compress(args) -> int:
    kwargs = dict(rate=_rate_kwargs(args), model=args.model, max_depth=args.max_depth,
                  second_pass=args.second_pass, context_pass=args.context_pass,
                  force=args.force, quiet=args.quiet,
                  report_psnr=args.report_psnr, verbose=args.verbose)
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise UsageError("compress takes IN OUT, or IN... --out-dir DIR for many files")
        if args.jobs is not None or args.skip_existing:
            raise UsageError("--jobs and --skip-existing need --out-dir")
        src, dst = args.paths
        try:
            line, warnings, times = compress_file(src, dst, **kwargs)
        except _expected_errors() as exc:
            raise _Reported(_prefixed(src, exc)) from exc
        for w in warnings:
            _warn(w)
        _result(line, args.quiet, to_stderr=dst == STDIO)
        if args.verbose:
            _times(times)
        return 0
    if STDIO in args.paths:
        raise UsageError("'-' (stdin) is for one file: compress - OUT")
    return _compress_many(args.paths, args.out_dir, args.jobs or 1, kwargs, args.skip_existing)


def _complete_bac(path: str) -> bool:
    """True for an existing .bac file that parses (magic, header, CRC of the whole file)."""
    from . import bitstream
    from .errors import BitstreamError
    try:
        bitstream.parse(_read_input(path))
        return True
    except (OSError, BitstreamError, ValueError):
        return False


def _compress_many(sources, out_dir, jobs, kwargs, skip_existing=False) -> int:
    if jobs < 1:
        raise UsageError("--jobs must be >= 1")
    os.makedirs(out_dir, exist_ok=True)
    kwargs = dict(kwargs, show_progress=False)
    targets, seen, status, skipped = [], {}, 0, 0
    for src in sources:
        dst = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + ".bac")
        if dst in seen:
            _err(f"{src}: same output name as {seen[dst]} ({dst}); skipped")
            status = 2
            continue
        seen[dst] = src
        if skip_existing and _complete_bac(dst):
            skipped += 1
            continue
        targets.append((src, dst, kwargs))
    total = len(targets)
    if skipped and not kwargs["quiet"]:
        print(f"{PROG}: {skipped} complete output{'s' * (skipped > 1)} skipped "
              "(--skip-existing)", file=sys.stderr, flush=True)
    prog = _Progress(f"compressing {total} files ({jobs} job{'s' * (jobs > 1)})",
                     kwargs["quiet"])
    try:
        if jobs == 1 or total <= 1:
            results = (_compress_worker(t) for t in targets)
            status = max(status, _report_batch(results, total, prog, kwargs))
        else:
            status = max(status, _run_pool(targets, min(jobs, total), prog, kwargs))
    finally:
        prog.done()
    return status


def blas_threads_per_worker(jobs: int) -> int:
    """BLAS threads for each of ``jobs`` workers: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // jobs)


def _worker_init():
    """Pool workers: Ctrl-C is the main process's business; SIGTERM unwinds (no temp files)."""
    import signal

    def stop(signum, frame):
        raise SystemExit(130)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)


def _run_pool(targets, jobs, prog, kwargs) -> int:
    """--jobs N: N spawned workers, BLAS threads shared out; Ctrl-C stops them all at once.

    On KeyboardInterrupt the pool is terminated: every worker gets SIGTERM, which unwinds
    its work (atomic writes remove their temporary file), so no partial file is left and
    the files already written stay.
    """
    import multiprocessing
    threads = str(blas_threads_per_worker(jobs))
    saved = {k: os.environ.get(k) for k in _BLAS_ENV}
    os.environ.update({k: threads for k in _BLAS_ENV})      # read by the spawned workers
    try:
        pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=_worker_init)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        status = _report_batch(pool.imap(_compress_worker, targets, chunksize=1),
                               len(targets), prog, kwargs)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return status


_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _report_batch(results, total, prog, kwargs) -> int:
    status = 0
    for i, (code, text, warnings, times) in enumerate(results, 1):
        for w in warnings:
            if code == 1:
                sys.stderr.write(w)
            else:
                _warn(w)
        if code == 0:
            _result(text, kwargs["quiet"], to_stderr=False)
            if kwargs.get("verbose"):
                _times(times)
        else:
            _err(text + (f" (rerun with {DEBUG_ENV}=1 for the traceback)" if code == 1 else ""))
        status = max(status, code)
        prog.step(f"{i}/{total} files done")
    return status


class _Reported(Exception):
    """An expected error already turned into its one-line message (exit 2)."""


# ---------------------------------------------------------------------------
# decompress
# ---------------------------------------------------------------------------
def cmd_decompress(args) -> int:
    from . import codec
    from .imageio import encode_image, format_for_path

    src, dst = args.input, args.output
    _refuse_same(src, dst)
    try:
        fmt = args.format.upper() if args.format else (
            "PNG" if dst == STDIO else format_for_path(dst))
    except ValueError as exc:                      # names OUT itself
        raise UsageError(str(exc)) from None
    try:
        if dst != STDIO:
            _check_new(dst, args.force)
        data = _read_input(src)
        name = "<stdin>" if src == STDIO else src
        with _Progress(f"decompressing {name}", args.quiet) as prog:
            dec = codec.decompress_details(data, args.model, max_pixels=args.max_pixels,
                                           progress=prog.step)
            t0 = time.perf_counter()
            _write_output(dst, encode_image(dec.pixels, fmt), args.force)
            dec.times[f"write {fmt}"] = time.perf_counter() - t0
    except _expected_errors() as exc:
        raise _Reported(_prefixed(src, exc)) from exc
    h = dec.header
    _result(f"{os.path.basename(name)} -> {os.path.basename(dst) if dst != STDIO else '<stdout>'}"
            f": {h.width}x{h.height} {'grey' if h.grey else 'RGB'}", args.quiet,
            to_stderr=dst == STDIO)
    if args.verbose:
        _times(dec.times)
    return 0


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
def cmd_info(args) -> int:
    from . import bitstream, codec
    from .errors import ModelFileError

    src = args.input
    try:
        if args.symbols:
            _check_new(args.symbols, args.force)
        data = _read_input(src)
        header, payload = bitstream.parse(data)
        model, model_note = None, ""
        try:
            model = codec.get_model(args.model)
            same = codec.model_id_bytes(model) == header.model_id
            model_note = (f" (matches {os.path.basename(str(model.path))})" if same else
                          f" (NOT {os.path.basename(str(model.path))}, whose id is "
                          f"{model.model_id[:16]})")
        except ModelFileError:
            if args.model is not None or args.symbols:
                raise
            model_note = " (default model not found)"
        npx = header.height * header.width
        h, w = header.latent_shape
        lines = [
            ("file", src),
            ("format version", header.version),
            ("entropy model", f"variant {header.entropy_model}"),
            ("image", f"{header.width} x {header.height} {'grey' if header.grey else 'RGB'}"),
            ("latents", f"{model.M if model is not None else 'M'} x {h} x {w}"),
            ("max depth", header.max_depth),
            ("lambda", _fmt_lam(header.lam) + (" (maximum of a lambda map)"
                                               if header.lambda_map else "")),
            ("second pass", "yes" if header.second_pass else "no"),
            ("model id", header.model_id.hex() + model_note),
            ("header bytes", bitstream.HEADER_SIZE),
            ("payload bytes", len(payload)),
            ("total bytes", len(data)),
            ("bpp", f"{8.0 * len(data) / npx:.4f}"),
        ]
        if args.symbols:
            with _Progress(f"decoding {src}", args.quiet):
                _, depth, index, zhat = codec.decode_symbols(data, model, args.max_pixels)
            buf = io.BytesIO()
            import numpy as np
            np.savez(buf, depth=depth.astype(np.int64), index=index.astype(np.int64),
                     zhat=zhat.astype(np.float64))
            atomic_write(args.symbols, buf.getvalue(), args.force)
            lines.append(("symbols", f"{args.symbols} (depth, index int64; zhat float64; "
                                     f"shape {tuple(depth.shape)})"))
    except _expected_errors() as exc:
        raise _Reported(_prefixed(src, exc)) from exc
    width = max(len(k) for k, _ in lines) + 1
    for key, value in lines:
        print(f"{key + ':':<{width}} {value}")
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------
def cmd_demo(args) -> int:
    """kodim23 at three lambdas.  The folder is the demo's own: a rerun replaces the six
    files it wrote before (and only those); anything else there is left alone."""
    from . import codec
    from .imageio import read_image, write_png

    src = find_demo_image()
    out = args.out
    os.makedirs(out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(src))[0]
    names = [(lam, os.path.join(out, f"{stem}_lam{_fmt_lam(lam)}.bac"),
              os.path.join(out, f"{stem}_lam{_fmt_lam(lam)}.png")) for lam in DEMO_LAMBDAS]
    img = read_image(src)
    model = codec.get_model(args.model)
    if not args.quiet:
        print(f"{PROG} demo: {src} ({img.width}x{img.height}), model "
              f"{os.path.basename(str(model.path))}", file=sys.stderr, flush=True)
    rows = []
    for lam, bac, png in names:
        if not args.quiet:
            print(f"  lambda {_fmt_lam(lam)} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        enc = codec.compress_details(img, lam, model=model)
        t1 = time.perf_counter()
        pixels = codec.decompress(enc.data, model)
        t2 = time.perf_counter()
        atomic_write(bac, enc.data, True)
        write_png(png, pixels, overwrite=True)
        ref = codec.reference_pixels(img)
        rows.append((lam, len(enc.data), enc.bpp, codec.psnr(ref, pixels), t1 - t0, t2 - t1))
    print(f"{'lambda':>8} {'bytes':>8} {'bpp':>7} {'PSNR dB':>8} {'encode s':>9} {'decode s':>9}")
    for lam, nbytes, bpp, value, te, td in rows:
        print(f"{_fmt_lam(lam):>8} {nbytes:>8} {bpp:>7.3f} {value:>8.2f} {te:>9.2f} {td:>9.2f}")
    print(f"files written to {out}")
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------
# conform
# ---------------------------------------------------------------------------
def cmd_conform(argv) -> int:
    """Delegate to bac_ref.conformance.runner.main(argv) when that module exists."""
    import importlib
    import importlib.util
    import inspect
    name = f"{__package__ or 'bac_ref'}.conformance.runner"
    if importlib.util.find_spec(name) is None:
        print("conformance runner not available", file=sys.stderr, flush=True)
        return 2
    module = importlib.import_module(name)
    runner = getattr(module, "main", None)
    if not callable(runner):
        print("conformance runner not available", file=sys.stderr, flush=True)
        return 2
    try:
        takes_prog = "prog" in inspect.signature(runner).parameters
    except (TypeError, ValueError):
        takes_prog = False
    code = runner(list(argv), prog=f"{PROG} conform") if takes_prog else runner(list(argv))
    return 0 if code is None else int(code)


# ---------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line (UsageError) instead of usage + exit."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _finite(kind):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (kind != "lam" and value == 0):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be a finite number {'>= 0' if kind == 'lam' else '> 0'}")
        return value
    parse.__name__ = kind
    return parse


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the options of ``bench`` / ``embeddings`` (and their modules) are loaded
    only when ``command`` is that one, so ``decompress`` imports no benchmark code."""
    from . import __version__
    p = _Parser(prog=PROG, description="Variational Bayesian Quantization image codec "
                "(Yang, Bamler & Mandt, ICML 2020): reference implementation.",
                epilog=f"Exit status: 0 ok, 2 bad input, 1 internal error, 130 interrupted "
                       f"(set {DEBUG_ENV}=1 for tracebacks).  '-' as IN or OUT is stdin / "
                       "stdout.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compress", help="compress images to .bac files",
                       usage=f"{PROG} compress IN OUT [--lam L | --bpp B | --psnr P] [options]\n"
                             f"       {PROG} compress IN... --out-dir DIR [--jobs N] [options]",
                       description="Compress IN to OUT, or every IN into --out-dir DIR. "
                       f"Without a rate option the rate is --lam {DEFAULT_LAMBDA:g}. "
                       "IN or OUT may be '-' (stdin / stdout; the result line then goes to "
                       "stderr).  OUT may never be IN, also with --force.")
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="input image(s) (PNG, PNM, .npy; others with Pillow), then the output "
                        "file (omit it with --out-dir)")
    rate = c.add_mutually_exclusive_group()
    rate.add_argument("--lam", type=_finite("lam"), metavar="L",
                      help=f"rate-distortion trade-off lambda >= 0 (default {DEFAULT_LAMBDA:g}; "
                           "larger = smaller file)")
    rate.add_argument("--bpp", type=_finite("bpp"), metavar="B",
                      help="search lambda for a file of B bits per pixel (within 2 %%): rates "
                           "are predicted without coding, so it costs about 1-2x one --lam "
                           "compress (more for sizes far above --lam 3's: coding time grows "
                           "with the file); a size beyond the model's reach gives the closest "
                           "file, never more bytes than the best quality needs")
    rate.add_argument("--psnr", type=_finite("psnr"), metavar="P",
                      help="search lambda for the smallest file with PSNR >= P dB (within "
                           "0.05 dB): 2-4 trial decodes, about 1.3-2x one --lam compress; a "
                           "quality beyond the model's reach is said at once and gives the "
                           "smallest file within 0.1 dB of the best it can do")
    c.add_argument("--out-dir", metavar="DIR", help="compress every IN to DIR/<name>.bac")
    c.add_argument("--jobs", type=int, metavar="N",
                   help="worker processes for --out-dir (default 1).  Each worker gets "
                        "cores/N BLAS threads; the entropy coder is single-threaded Python, "
                        "so N up to the number of idle cores helps, more does not.  Ctrl-C "
                        "stops every worker at once; finished files stay")
    c.add_argument("--skip-existing", action="store_true",
                   help="with --out-dir: skip inputs whose output exists and is a complete "
                        ".bac file (to finish an interrupted batch)")
    c.add_argument("--max-depth", type=int, default=10, metavar="N",
                   help="VBQ grid depth 1..16 (default 10)")
    c.add_argument("--second-pass", action=argparse.BooleanOptionalAction, default=True,
                   help="requantize with per-channel depth code lengths, the paper's second "
                        "pass, in three rounds (SPEC.md §5.4; default: on; with --no-context-pass "
                        "too, the first pass only)")
    c.add_argument("--context-pass", action=argparse.BooleanOptionalAction, default=True,
                   help="re-choose each depth with its bits priced by the entropy model's "
                        "contexts, two sweeps (SPEC.md §5.6; default: on; about 4-5 %% smaller "
                        "files at equal PSNR; the decoder is the same either way)")
    c.add_argument("--no-psnr", dest="report_psnr", action="store_false",
                   help="do not report the PSNR (it costs one synthesis g_s, about 0.13 s "
                        "for 768x512 on an idle 2-core machine)")
    _common(c)
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="decode a .bac file to PNG, PPM/PGM or .npy",
                       description="Decode IN.bac to OUT; the format follows OUT's extension "
                       "(.png, .ppm / .pgm / .pnm, .npy; others are refused) or --format. "
                       "IN or OUT may be '-' (stdin / stdout; PNG unless --format).")
    d.add_argument("input", metavar="IN.bac")
    d.add_argument("output", metavar="OUT")
    d.add_argument("--format", choices=("png", "ppm", "pgm", "pnm", "npy"),
                   help="output format (default: from OUT's extension)")
    _common(d)
    _max_pixels(d)
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="show a .bac file's header and sizes",
                       description="Print the header fields and sizes of FILE.bac; with "
                       "--symbols, decode the (depth, index) grid points and zhat to an .npz.")
    i.add_argument("input", metavar="FILE.bac")
    i.add_argument("--symbols", metavar="OUT.npz",
                   help="write depth, index (int64) and zhat (float64), shape (C, h, w)")
    _common(i)
    _max_pixels(i)
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("demo", help="compress the sample photo at three rates",
                       description=f"Compress {DEMO_IMAGE} at lambda "
                       f"{', '.join(_fmt_lam(v) for v in DEMO_LAMBDAS)} and print a table; the "
                       ".bac files and decoded PNGs go to --out (a rerun replaces them).")
    m.add_argument("--out", default="bac_ref_demo", metavar="DIR",
                   help="output folder (default ./bac_ref_demo)")
    _common(m)
    m.set_defaults(func=cmd_demo)

    sub.add_parser("conform", help="run the conformance suite (bac_ref.conformance.runner; "
                   f"'{PROG} conform --help' for its options)", add_help=False)

    bench_help = "rate-distortion benchmark: VBQ vs baselines and JPEG/WebP/AVIF (maintainers)"
    emb_help = "word-embedding compression benchmark, VBQ vs baselines (maintainers)"
    if command == "bench":
        # bench (issue 6): the options and the work live in bac_ref.bench.rd.
        from .bench import rd as bench
        b = sub.add_parser("bench", help=bench_help,
                           description="Code IMAGES with VBQ over a lambda grid, the latent "
                           "baselines and Pillow's codecs; write per-image and mean results "
                           "(JSON, Markdown), BD-rate against JPEG and an RD plot into --out "
                           "DIR (resumable). See bac_ref/bench/rd.py.")
        bench.add_arguments(b)
        b.set_defaults(func=bench.cmd_bench)
    else:
        sub.add_parser("bench", help=bench_help, add_help=False)
    if command == "embeddings":
        # embeddings (issue 8): the paper's second experiment, in bac_ref.embeddings.benchmark.
        from .embeddings import benchmark as embeddings
        e = sub.add_parser("embeddings", help=emb_help,
                           description="Compress a Bayesian skip-gram embedding matrix with VBQ "
                           "over a lambda grid, uncertainty-blind VBQ, uniform quantization "
                           "(range coder, gzip, bzip2, lzma, empirical entropy) and k-means; "
                           "score each reconstruction on word analogies (top-1, Hits@10, MRR); "
                           "write JSON, Markdown and a PNG plot into --out DIR. See "
                           "bac_ref/embeddings/benchmark.py.")
        embeddings.add_arguments(e)
        e.set_defaults(func=embeddings.cmd_embeddings)
    else:
        sub.add_parser("embeddings", help=emb_help, add_help=False)
    return p


def _max_pixels(p):
    from .codec import MAX_DECODE_PIXELS
    p.add_argument("--max-pixels", type=int, default=MAX_DECODE_PIXELS, metavar="N",
                   help="refuse files that declare more than N pixels (default %(default)s; "
                   "a tiny file can declare a huge image, SPEC.md section 8)")


def _common(p, force=True):
    p.add_argument("--model", metavar="PATH", help="model .npz file or name (default: the "
                   "shipped bmshj2017-vae-n128)")
    if force:
        p.add_argument("--force", action="store_true", help="replace existing output files")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("--quiet", "-q", action="store_true",
                      help="no result line and no progress (warnings and errors still go "
                           "to stderr)")
    talk.add_argument("--verbose", "-v", action="store_true",
                      help="also print the seconds of every stage (g_a, VBQ, coding, g_s ...) "
                           "on stderr")


def main(argv=None) -> int:
    """Entry point of ``bac-ref``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV) == "1"
    if sys.stdout is None:                         # started with fd 1 closed (`>&-`)
        _err("standard output is closed (use >/dev/null to discard it)")
        return 2
    try:
        if argv and argv[0] == "conform":
            return cmd_conform(argv[1:])
        command = next((a for a in argv if not a.startswith("-")), None)
        args = build_parser(command).parse_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return 2
        return args.func(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except (UsageError, _Reported) as exc:
        if isinstance(exc.__cause__, BrokenPipeError):
            return _reader_gone()
        if debug and exc.__cause__ is not None:
            cause = exc.__cause__
            traceback.print_exception(type(cause), cause, cause.__traceback__)
        _err(str(exc))
        return 2
    except _expected_errors() as exc:
        if debug:
            traceback.print_exc()
        _err(_describe(exc))
        return 2
    except Exception as exc:                       # noqa: BLE001 - a bug: one line + hint
        if debug:
            traceback.print_exc()
        _err(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
             f"(rerun with {DEBUG_ENV}=1 for the traceback)")
        return 1


def _reader_gone() -> int:
    """stdout's reader went away (``bac-ref info x.bac | head``): stop quietly, as cat does.

    stdout is pointed at /dev/null so that the interpreter's last flush cannot fail again.
    """
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141                                     # 128 + SIGPIPE: what a shell reports for cat


if __name__ == "__main__":
    sys.exit(main())
