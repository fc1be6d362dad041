r"""Word-embedding compression benchmark: ``bac-ref embeddings`` (the paper's §5.2).

Question: how many bits per dimension does a compressed embedding matrix need
to keep its word-analogy quality?  One Bayesian skip-gram model
(:mod:`bac_ref.embeddings.skipgram`: posterior means mu and stds sigma, V x D) is
compressed by every method below; each reconstruction is scored with 3CosAdd
(:mod:`bac_ref.embeddings.analogy`: top-1, Hits@10, MRR).  All sizes are real bytes::

    method              quantizer                               code (bits per dimension = 8 bytes / (V D))
    VBQ                 VBQ under N(0, s^2), s = RMS(mu)          .bacw file (SPEC.md §13: §9 adaptive model)
    VBQ, blind          same, sigma := its per-dimension RMS      .bacw file
    uniform + range     n equal bins over [min, max] of mu,       static table from the symbol counts,
                        bin centres                               counts sent as 4-byte ints, range coder
    uniform + gzip/bzip2/lzma   same symbols, one byte each       the general-purpose compressor, max level
    uniform, entropy    same symbols                              empirical entropy (the paper's
                                                                  estimate; tables free, not a real code)
    k-means + range     1-D k-means (k levels) over all entries   as uniform + range, plus k float32 centroids

"VBQ, paper estimate" reports, for the VBQ points, the paper's rate measure
(empirical entropy of the grid points of the matrix itself).

Summary: for target scores (fractions of the uncompressed Hits@10) the bits
per dimension each method needs, interpolated linearly between measured
points (in log bits), and VBQ's ratio to the best uniform variant.
"""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
import os
import sys
import time

import numpy as np

from . import analogy, bacw as embedding_codec
from ..bench.baselines import ChannelEntropyModel, KMeansQuantizer, UniformQuantizer
from ..errors import ModelFileError

DEFAULT_MODEL = "skipgram-d100.npz"
DEFAULT_LAMBDAS = tuple(float(x) for x in 2.0 ** np.arange(-10, 8, 1.0))   # 2^-10 .. 2^7
UNIFORM_LEVELS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
KMEANS_LEVELS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
TARGET_FRACTIONS = (0.5, 0.75, 0.9, 0.95)
UNIFORM_METHODS = ("uniform + range", "uniform + gzip", "uniform + bzip2", "uniform + lzma",
                   "uniform, entropy")


# ---------------------------------------------------------------------------
# The model file
# ---------------------------------------------------------------------------
def load_embeddings(path: str | None = None):
    """(words tuple, mu (V, D) float32, sigma (V, D) float32, meta dict) from an embedding .npz.

    ``path`` is a file or a bare name searched like the image model
    (:func:`bac_ref.model.resolve_model_path`); None means the shipped
    ``skipgram-d100.npz``.  The file's sha256 is checked against its folder's manifest.
    """
    from ..model import _check_manifest, resolve_model_path
    from ..weights import sha256_file
    path = resolve_model_path(DEFAULT_MODEL if path is None else path)
    try:
        _check_manifest(path, os.path.getsize(path), sha256_file(path))
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"cannot read embeddings {path}: {exc}") from None
    missing = {"words", "mu", "sigma"} - set(arrays)
    if missing:
        raise ModelFileError(f"{path}: missing arrays {sorted(missing)}")
    mu, sigma, words = arrays["mu"], arrays["sigma"], arrays["words"]
    if mu.ndim != 2 or sigma.shape != mu.shape or words.shape != (mu.shape[0],):
        raise ModelFileError(f"{path}: need words (V,), mu and sigma (V, D); got "
                             f"{words.shape}, {mu.shape}, {sigma.shape}")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma)) and np.all(sigma > 0)):
        raise ModelFileError(f"{path}: mu must be finite and sigma finite and > 0")
    meta = json.loads(str(arrays["meta_json"])) if "meta_json" in arrays else {}
    return tuple(str(w) for w in words), mu, sigma, meta


# ---------------------------------------------------------------------------
# Sizes of the baselines
# ---------------------------------------------------------------------------
def static_range_bytes(symbols: np.ndarray, num_symbols: int, side_bytes: int) -> int:
    """Real size of a two-part code: 4-byte count per symbol + side info + range-coded payload.

    The payload is checked by decoding it back.
    """
    flat = np.asarray(symbols, dtype=np.int64).reshape(1, -1)
    model = ChannelEntropyModel.from_symbols(flat, num_symbols)
    payload = model.encode(flat)
    if not np.array_equal(model.decode(payload, flat.shape), flat):
        raise AssertionError("baseline payload does not decode to its symbols")
    return 4 + 4 * num_symbols + side_bytes + len(payload)


def empirical_entropy_bits(symbols) -> float:
    """sum over entries of -log2(empirical frequency): the paper's rate measure."""
    _, counts = np.unique(np.asarray(symbols).ravel(), return_counts=True)
    n = counts.sum()
    return float(-np.sum(counts * np.log2(counts / n)))


def general_purpose_bytes(symbols: np.ndarray) -> dict:
    """gzip / bzip2 / lzma (highest levels) of one byte per symbol, row-major."""
    raw = np.asarray(symbols, dtype=np.uint8).tobytes()
    return {"gzip": len(gzip.compress(raw, 9, mtime=0)), "bzip2": len(bz2.compress(raw, 9)),
            "lzma": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))}


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(mu, sigma, questions: analogy.Questions, lambdas=DEFAULT_LAMBDAS,
        uniform_levels=UNIFORM_LEVELS, kmeans_levels=KMEANS_LEVELS, max_depth: int = 10,
        progress=_log) -> dict:
    """Every method's points: dicts with method, setting, bpd, top1, hits10, mrr."""
    mu64 = np.asarray(mu, dtype=np.float64)
    v, d = mu64.shape
    n = v * d
    points = []

    def add(method, setting, nbytes=None, bits=None, zhat=None, extra=None):
        bpd = (8 * nbytes if bits is None else bits) / n
        scores = analogy.evaluate(zhat, questions).as_dict()
        rec = {"method": method, "setting": setting, "bpd": bpd, **scores}
        if nbytes is not None:
            rec["bytes"] = int(nbytes)
        rec.update(extra or {})
        points.append(rec)
        progress(f"  {method:<20} {setting:<14} {bpd:7.3f} bits/dim  top-1 {scores['top1']:.3f}"
                 f"  Hits@10 {scores['hits10']:.3f}  MRR {scores['mrr']:.3f}")

    t0 = time.time()
    base = analogy.evaluate(mu64, questions).as_dict()
    points.append({"method": "uncompressed", "setting": "float32", "bpd": 32.0, **base})
    progress(f"uncompressed float32: top-1 {base['top1']:.3f} Hits@10 {base['hits10']:.3f} "
             f"MRR {base['mrr']:.3f} on {base['questions']} questions")

    sig64 = np.asarray(sigma, dtype=np.float64)
    blind = np.broadcast_to(np.sqrt(np.mean(sig64 ** 2, axis=0, keepdims=True)), sig64.shape)
    for label, s in (("VBQ", sig64), ("VBQ, blind", blind)):
        progress(f"{label}: {len(lambdas)} lambdas (encode, decode and check each)")
        for lam in lambdas:
            data, zhat = embedding_codec.compress_embeddings(mu64, s, lam, max_depth=max_depth,
                                                             return_zhat=True)
            back, depth, index = embedding_codec.decompress_embeddings(data, return_symbols=True)
            if not np.array_equal(back, zhat):
                raise AssertionError(f"{label} lambda {lam}: decoded matrix differs")
            j = (2 * index + 1) << (max_depth - depth)
            est = empirical_entropy_bits(j) / n
            add(label, f"lambda={lam:g}", nbytes=len(data), zhat=zhat,
                extra={"lambda": lam, "paper_estimate_bpd": est,
                       "zero_rows": int(np.sum(~depth.any(axis=1)))})

    progress(f"uniform: {len(uniform_levels)} level counts")
    flat = mu64.reshape(1, -1)
    for levels in uniform_levels:
        uq = UniformQuantizer(levels).fit(flat)
        res = uq.quantize(flat)
        zhat = res.zhat.reshape(v, d)
        sym = res.symbols.reshape(v, d)
        setting = f"{levels} levels"
        add("uniform + range", setting, nbytes=static_range_bytes(sym, levels, 16), zhat=zhat)
        for name, size in general_purpose_bytes(sym).items():
            add(f"uniform + {name}", setting, nbytes=size + 16, zhat=zhat)
        add("uniform, entropy", setting, bits=empirical_entropy_bits(sym), zhat=zhat)

    progress(f"k-means: {len(kmeans_levels)} level counts")
    for k in kmeans_levels:
        km = KMeansQuantizer(k).fit(flat)
        res = km.quantize(flat)
        add("k-means + range", f"k={k}",
            nbytes=static_range_bytes(res.symbols, k, 4 * k), zhat=res.zhat.reshape(v, d))
    progress(f"done in {time.time() - t0:.0f} s")
    return {"matrix": [v, d], "uncompressed": base, "points": points,
            "summary": summarize(points, base["hits10"])}


def bpd_needed(points, method: str, target: float, key: str = "hits10"):
    """Smallest bits/dim at which ``method`` reaches ``target`` (log-linear interpolation), or None."""
    curve = sorted((p["bpd"], p[key]) for p in points if p["method"] == method)
    prev = None
    for bpd, score in curve:
        if score >= target:
            if prev is None or prev[1] >= score:
                return bpd
            t = (target - prev[1]) / (score - prev[1])
            return float(math.exp(math.log(prev[0]) + t * (math.log(bpd) - math.log(prev[0]))))
        prev = (bpd, score)
    return None


def summarize(points, hits10_full: float) -> list:
    methods = []
    for p in points:
        if p["method"] != "uncompressed" and p["method"] not in methods:
            methods.append(p["method"])
    rows = []
    for frac in TARGET_FRACTIONS:
        target = frac * hits10_full
        need = {m: bpd_needed(points, m, target) for m in methods}
        uniform = [need[m] for m in UNIFORM_METHODS if need.get(m) is not None]
        real_uniform = [need[m] for m in UNIFORM_METHODS[:-1] if need.get(m) is not None]
        row = {"fraction": frac, "target_hits10": target, "bpd": need}
        if need.get("VBQ") is not None and uniform:
            row["vbq_over_best_uniform"] = need["VBQ"] / min(uniform)
        if need.get("VBQ") is not None and real_uniform:
            row["vbq_over_best_real_uniform"] = need["VBQ"] / min(real_uniform)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------
def markdown(result: dict, meta: dict | None = None) -> str:
    v, d = result["matrix"]
    base = result["uncompressed"]
    out = [f"# Word-embedding compression ({v} words x {d} dimensions)", ""]
    if meta:
        out.append(f"Model: {meta.get('model', '?')} on {meta.get('corpus', '?')}, "
                   f"{meta.get('epochs_done', '?')} epochs.")
    out += [f"Uncompressed (float32, 32 bits/dim): top-1 {base['top1']:.4f}, Hits@10 "
            f"{base['hits10']:.4f}, MRR {base['mrr']:.4f} on {base['questions']} analogy questions "
            "(3CosAdd).", "", "## Bits per dimension needed for a Hits@10 target", "",
            "| target (fraction of uncompressed) | Hits@10 | VBQ | VBQ, blind | best uniform "
            "(method) | k-means + range | VBQ / best uniform |", "|---|---|---|---|---|---|---|"]

    def f(x):
        return "not reached" if x is None else f"{x:.3f}"
    for row in result["summary"]:
        need = row["bpd"]
        uni = [(need[m], m) for m in UNIFORM_METHODS if need.get(m) is not None]
        best = min(uni) if uni else None
        ratio = row.get("vbq_over_best_uniform")
        out.append(f"| {row['fraction']:.0%} | {row['target_hits10']:.4f} | {f(need.get('VBQ'))} | "
                   f"{f(need.get('VBQ, blind'))} | "
                   f"{'not reached' if best is None else f'{best[0]:.3f} ({best[1]})'} | "
                   f"{f(need.get('k-means + range'))} | {'-' if ratio is None else f'{ratio:.2f}x'} |")
    out += ["", "## Every point", "", "| method | setting | bits/dim | top-1 | Hits@10 | MRR | note |",
            "|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        note = ""
        if "paper_estimate_bpd" in p:
            note = f"paper estimate {p['paper_estimate_bpd']:.3f}; {p['zero_rows']} all-zero rows"
        out.append(f"| {p['method']} | {p['setting']} | {p['bpd']:.4f} | {p['top1']:.4f} | "
                   f"{p['hits10']:.4f} | {p['mrr']:.4f} | {note} |")
    return "\n".join(out) + "\n"


def plot(result: dict, path: str) -> bool:
    """Hits@10 against bits/dim (PNG); False when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"VBQ": ("C3", "o-"), "VBQ, blind": ("C1", "s--"), "uniform + range": ("C0", "^-"),
              "uniform, entropy": ("C0", ":"), "uniform + lzma": ("C2", "v-"),
              "uniform + gzip": ("C7", "x-"), "uniform + bzip2": ("C8", "+-"),
              "k-means + range": ("C4", "d-")}
    for method, (color, style) in styles.items():
        pts = sorted((p["bpd"], p["hits10"]) for p in result["points"] if p["method"] == method)
        if pts:
            ax.plot(*zip(*pts), style, color=color, label=method, markersize=4)
    full = result["uncompressed"]["hits10"]
    ax.axhline(full, color="k", lw=0.8, label="uncompressed (32 bits/dim)")
    ax.axhline(0.9 * full, color="k", lw=0.8, ls=":", label="90% of uncompressed")
    ax.set_xscale("log")
    ax.set_xlabel("bits per dimension (real file sizes)")
    ax.set_ylabel("Hits@10 (3CosAdd)")
    ax.set_title("Bayesian skip-gram embeddings: one model, every rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def add_arguments(p) -> None:
    p.add_argument("--model", default=None, help=f"embedding .npz (default pretrained_npz/{DEFAULT_MODEL})")
    p.add_argument("--questions", default=os.path.join("..", "shared", "data", "text", "questions-words.txt"),
                   help="word-analogy questions (Mikolov et al.)")
    p.add_argument("--out", required=True, help="output folder: embeddings.json, .md, .png")
    p.add_argument("--lambdas", type=float, nargs="+", default=None,
                   help="VBQ lambdas (default 2^-10 .. 2^7)")
    p.add_argument("--quick", action="store_true", help="4 lambdas and 4 level counts (a smoke run)")


def cmd_embeddings(args) -> int:
    from ..entry import require_file
    require_file(args.questions, "analogy questions (--questions; Mikolov's questions-words.txt)")
    words, mu, sigma, meta = load_embeddings(args.model)
    questions = analogy.load_questions(args.questions, words)
    _log(f"{len(words)} words x {mu.shape[1]} dims; {questions.ids.shape[0]} of "
         f"{questions.total} questions covered")
    lambdas = args.lambdas or DEFAULT_LAMBDAS
    levels, ks = UNIFORM_LEVELS, KMEANS_LEVELS
    if args.quick:
        lambdas, levels, ks = lambdas[::4], levels[::4], ks[::4]
    result = run(mu, sigma, questions, lambdas, levels, ks)
    result["model"] = {k: meta.get(k) for k in ("model", "corpus", "vocabulary", "epochs_done", "settings")}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "embeddings.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "embeddings.md"), "w") as f:
        f.write(markdown(result, meta))
    if not plot(result, os.path.join(args.out, "embeddings.png")):
        _log("matplotlib not installed (extra 'bench'): no plot written")
    _log(f"wrote {args.out}/embeddings.json, .md" + ", .png")
    return 0


# ---------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------
def model_card(path: str) -> str:
    """Markdown card of an embedding file, from its arrays and metadata."""
    from ..weights import sha256_file
    words, mu, sigma, meta = load_embeddings(path)
    st = meta.get("settings", {})
    hist = meta.get("history", [])
    last = hist[-1] if hist else {}
    size = os.path.getsize(path)
    lines = [
        f"# Model card: {os.path.basename(path)}", "",
        "* Model: Bayesian skip-gram with negative sampling (`bac_ref/embeddings/skipgram.py`): mean-field "
        "Gaussian posteriors over word and context vectors, N(0, s^2) priors with learned s, "
        "one reparameterised sample per occurrence, Adam (Barkan 2017; Bamler & Mandt 2017; "
        "the VBQ paper's §5.2).",
        f"* Corpus: ../shared/data/text/{meta.get('corpus', '?')} ({meta.get('tokens', 0):,} "
        f"in-vocabulary tokens; tokens are lower-cased runs of a-z).",
        f"* Vocabulary: {len(words):,} words with count >= {st.get('min_count', '?')}, most "
        f"frequent first (row order); {mu.shape[1]} dimensions.",
        f"* Settings: window {st.get('window')}, {st.get('negatives')} negatives, subsampling t = "
        f"{st.get('subsample')}, batch {st.get('batch')}, Adam lr {st.get('lr')} (cosine to 5 %), "
        f"{meta.get('epochs_done')} epochs, seed {st.get('seed')}.",
        f"* Arrays: `words` ({len(words)},) str, `counts`, `mu` and `sigma` ({mu.shape[0]}, "
        f"{mu.shape[1]}) float32 (the word vectors' posterior), `prior_scale` (learned s = "
        f"{float(last.get('prior_scale_in', float('nan'))):.4f}); metadata in `meta_json`.",
        f"* File: {size / 1e6:.1f} MB, sha256 `{sha256_file(path)}`.",
        f"* Posterior stds: median {np.median(sigma):.4f}; median over the 1,000 most frequent "
        f"words {np.median(sigma[:1000]):.4f}, over the 1,000 rarest {np.median(sigma[-1000:]):.4f}.",
    ]
    if "hits10" in last:
        lines.append(f"* **Uncompressed analogy scores** (3CosAdd on the {last['questions']:,} "
                     f"questions of questions-words.txt whose four words are in the "
                     f"vocabulary): top-1 {last['top1']:.4f}, Hits@10 {last['hits10']:.4f}, "
                     f"MRR {last['mrr']:.4f}.")
    lines += ["", "## Training curve (after each epoch)", "",
              "| epoch | log-lik / pair | KL / pair | s | median sigma | top-1 | Hits@10 | MRR |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for h in hist:
        lines.append(f"| {h['epoch']} | {h['loglik_per_pair']:.4f} | {h['kl_per_pair']:.4f} | "
                     f"{h['prior_scale_in']:.4f} | {h['sigma_in_median']:.4f} | "
                     f"{h.get('top1', float('nan')):.4f} | {h.get('hits10', float('nan')):.4f} | "
                     f"{h.get('mrr', float('nan')):.4f} |")
    lines += ["", "Reproduce (about 4 minutes per epoch on one CPU core):", "",
              "    python -m bac_ref.embeddings.skipgram --out pretrained_npz/skipgram-d100.npz",
              "    bac-ref embeddings --out results/embeddings", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(prog="python -m bac_ref.embeddings.benchmark",
                                 description="write the model card of an embedding file")
    ap.add_argument("--card", required=True, metavar="NPZ")
    ap.add_argument("--out", help="Markdown file (default: print)")
    a = ap.parse_args()
    text = model_card(a.card)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    else:
        print(text)
