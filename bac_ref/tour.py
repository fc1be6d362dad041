"""A guided tour: one crop of kodim23 from pixels to bits and back, with real numbers.

    python -m bac_ref.tour                          # print the tour (Markdown) to stdout
    python -m bac_ref.tour --write docs/tour.md     # regenerate the committed page

The tour runs the real pipeline (g_a, VBQ, entropy model, range coder, header, decoder,
g_s) on a 64 x 96 crop of data/kodim23.png with the shipped model and prints what every
stage sees.  Nothing in the page is typed by hand: regenerate it whenever the model, the
codec or this script changes; ``tests/test_tour.py`` fails when docs/tour.md is stale.

    _Run (the crop, mu, sigma, the .bac file)
      -> intro, step 1 (g_a) ... step 6 (decoding): one function each, appending to a _Page

Honesty checks (each raises AssertionError when it fails, so a wrong page cannot be made):

* the layer-by-layer g_a of step 1 gives exactly ``Model.analysis``;
* the candidate table of step 2 picks what ``vbq.quantize`` and the brute force
  ``vbq.quantize_exhaustive`` pick, and the codec quantizes like ``vbq.quantize``;
* the labelled coding steps of step 4 (``entropy_model.coding_steps``: the encoder's own
  SPEC.md §9 walk, with each step named after its model) give, through a fresh
  ``rangecoder.Encoder``, the payload the codec wrote;
* decoding gives back the same symbols and a bit-identical zhat.

The output is deterministic: no timings, no absolute paths, floats rounded for display.
g_a and g_s run in float32 and are not bit-exact across BLAS libraries (SPEC.md §7.3), so
:func:`generate` also returns the numbers of the lines that show such floats; the test
uses them to tell a platform difference from a real change.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from fractions import Fraction

import numpy as np

from . import bitstream, codec, entropy_model, vbq
from .entropy_model import TOTAL, coding_steps
from .layers import conv2d, gdn
from .priors import QuantilePrior
from .rangecoder import OVERHEAD_PER_SYMBOL_BITS, Encoder

CROP = (128, 432, 64, 96)          # top, left, height, width (pixels of kodim23)
LAMBDAS = (0.3, 3.0, 30.0)         # the three rates of steps 2 and 3
LAM = 3.0                          # the rate of steps 3-6
MAX_DEPTH = codec.DEFAULT_MAX_DEPTH
FIRST_STEPS = 14                   # coding steps shown in full in step 4
TOP_CHANNELS = 8                   # channels listed in step 6
NEAR_PRIOR = 0.5                   # median sigma from which a channel counts as near-collapsed
COMMAND = "python -m bac_ref.tour --write docs/tour.md"


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------
class _Page:
    """Markdown lines, remembering which ones show floats computed by g_a / g_s."""

    def __init__(self):
        self.lines: list[str] = []
        self.float_lines: set[int] = set()

    def add(self, text: str = "", floaty: bool = False) -> None:
        for line in text.split("\n"):
            if floaty:
                self.float_lines.add(len(self.lines))
            self.lines.append(line.rstrip())

    def para(self, text: str, floaty: bool = False) -> None:
        self.add(text, floaty)
        self.add()

    def code(self, rows, floaty=()) -> None:
        """A fenced block; ``floaty``: True, or the indices of rows that show g_a/g_s floats."""
        self.add("```")
        for i, row in enumerate(rows):
            self.add(row, floaty is True or (floaty is not False and i in floaty))
        self.add("```")
        self.add()

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


def _g(x: float, digits: int = 3) -> str:
    """A float for display with ``digits`` significant digits (never '-0').

    Values computed from g_a's float32 output get 3 or 4 digits: BLAS kernels change
    their last bits (SPEC.md §7.3), and more digits would make the page platform-specific.
    """
    s = f"{x:.{digits}g}"
    return "0" if s in ("-0", "0") else s


def _fixed(x: float, decimals: int = 2) -> str:
    """A float with fixed decimals (never '-0.00'): for values whose small digits are noise."""
    s = f"{x:.{decimals}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _ids(values, width: int = 88) -> list[str]:
    """Integers as comma-separated lines of at most ``width`` characters."""
    out, line = [], ""
    for v in values:
        item = str(int(v))
        if line and len(line) + 2 + len(item) > width:
            out.append(line + ",")
            line = item
        else:
            line = item if not line else line + ", " + item
    if line:
        out.append(line)
    return out or ["(none)"]


def _bits(mass: int) -> float:
    """Information content of a coding step of probability mass / 2^24."""
    return -math.log2(mass / TOTAL)


def _xi(d: int, k: int) -> str:
    return str(Fraction(2 * k + 1, 2 << d))


# ---------------------------------------------------------------------------
# What the steps share
# ---------------------------------------------------------------------------
class _Run:
    """The crop, its posterior, its quantization at every lambda of the tour, its .bac file."""

    def __init__(self):
        from .sample import find_demo_image
        from .imageio import read_image

        self.model = codec.get_model(None)
        self.prior = codec.model_prior(self.model)
        top, left, hh, ww = CROP
        self.image = read_image(find_demo_image())
        self.px = np.ascontiguousarray(self.image.pixels[top:top + hh, left:left + ww, :3])
        self.x, _ = codec.as_float_image(self.px)                   # (H, W, 3) float32
        self.mu32, self.sigma32 = self.model.analysis(self.x)       # (M, h, w) float32
        self.mu = self.mu32.astype(np.float64)                      # as the codec does
        self.sigma = self.sigma32.astype(np.float64)
        self.quants = {lam: vbq.quantize(self.mu, self.sigma, lam, self.prior, MAX_DEPTH)
                       for lam in LAMBDAS}
        self.q = self.quants[LAM]
        self.enc = codec.compress_details(self.px, lam=LAM, model=self.model,
                                          max_depth=MAX_DEPTH, second_pass=False,
                                          context_pass=False)
        if not (np.array_equal(self.enc.depth, self.q.depth)
                and np.array_equal(self.enc.index, self.q.index)):
            raise AssertionError("the codec quantized differently from vbq.quantize")
        self.med_sigma = np.median(self.sigma, axis=(1, 2))                        # (M,)
        self.near = np.nonzero(self.med_sigma >= NEAR_PRIOR)[0]
        self.inactive = np.nonzero(self.q.depth.max(axis=(1, 2)) == 0)[0]
        self.steps = coding_steps(self.q.depth, self.q.index, MAX_DEPTH)
        self.info = sum(_bits(s[4]) for s in self.steps)
        self.payload_bits = 8 * (len(self.enc.data) - bitstream.HEADER_SIZE)


def _intro(page: _Page, run: _Run) -> None:
    top, left, hh, ww = CROP
    steps = run.model.meta.get("steps")
    page.add("# A guided tour: from a photo to bits and back")
    page.add()
    page.para(f"<!-- Generated by `{COMMAND}`; do not edit by hand. -->")
    page.para(
        "This page follows one small crop of a photo through the whole `bac_ref` pipeline and\n"
        "prints what every stage computes. Every number comes from running the code with the\n"
        f"shipped model (`{COMMAND}` regenerates the page;\n"
        "`tests/test_tour.py` fails when it is out of date). Keep [SPEC.md](../SPEC.md) and the\n"
        "module docstrings at hand: each step names the section and the module it shows.\n"
        "Reading time: about 30 minutes.")
    page.code([
        f"model  {os.path.basename(str(run.model.path))}, id {run.model.model_id[:16]} "
        "(sha256 of the file, SPEC.md §6.3)",
        f"       {run.model.N} hidden channels, M = {run.model.M} latent channels"
        + (f", {steps} training steps" if steps is not None else ""),
        f"prior  {run.prior.num_channels} per-channel quantile tables of "
        f"{run.prior.table.shape[1]} values (K = {run.prior.table_bits}, SPEC.md §4.2)",
        f"VBQ    max_depth N = {MAX_DEPTH}: up to {MAX_DEPTH} bits per latent (SPEC.md §4.1)",
    ])
    page.para(
        f"The crop: rows {top}-{top + hh - 1} and columns {left}-{left + ww - 1} of "
        f"`data/kodim23.png` ({hh} x {ww} pixels), the red\n"
        "parrot's face: smooth red feathers at the top, the white patch with its lines of small\n"
        "red feathers, the edge of the eye on the right. Its luminance, one character per 8 x 2\n"
        "pixels, boxed in the 16 x 16 blocks that become one latent position each:")
    page.code(_ascii_crop(run.px))


def _ascii_crop(px: np.ndarray) -> list[str]:
    """Luminance as characters, one per 8 x 2 pixels, latent cells boxed (integers only)."""
    ramp = " .:-=+*#%@"
    p = px.astype(np.int64)
    lum = (299 * p[..., 0] + 587 * p[..., 1] + 114 * p[..., 2]) // 1000      # (H, W), 0..255
    hh, ww = lum.shape
    cells = lum.reshape(hh // 8, 8, ww // 2, 2).sum(axis=(1, 3)) // 16      # (H/8, W/2)
    w_lat = ww // 16
    out = ["     " + " ".join(f"x={x:<6d}" for x in range(w_lat)).rstrip()]
    rule = "    +" + "+".join(["-" * 8] * w_lat) + "+"
    out.append(rule)
    for i, row in enumerate(cells):
        chars = "".join(ramp[int(v) * len(ramp) // 256] for v in row)
        label = f"y={i // 2}" if i % 2 == 0 else "   "
        out.append(f"{label} |" + "|".join(chars[j:j + 8] for j in range(0, len(chars), 8)) + "|")
        if i % 2 == 1:
            out.append(rule)
    return out


# ---------------------------------------------------------------------------
# 1 The analysis transform
# ---------------------------------------------------------------------------
def _g_a_by_layer(params, x: np.ndarray):
    """g_a as :func:`bac_ref.g_a.analysis` computes it, keeping the intermediate shapes."""
    m = params["g_a.conv2.weight"].shape[0] // 2
    shapes = [("input (3, H, W)", x.shape)]
    y = conv2d(x, params["g_a.conv0.weight"], params["g_a.conv0.bias"], stride=4, padding=4)
    y = gdn(y, params["g_a.gdn0.beta"], params["g_a.gdn0.gamma"])
    shapes.append(("conv 9x9 /4, GDN", y.shape))
    y = conv2d(y, params["g_a.conv1.weight"], params["g_a.conv1.bias"], stride=2, padding=2)
    y = gdn(y, params["g_a.gdn1.beta"], params["g_a.gdn1.gamma"])
    shapes.append(("conv 5x5 /2, GDN", y.shape))
    y = conv2d(y, params["g_a.conv2.weight"], params["g_a.conv2.bias"], stride=2, padding=2)
    shapes.append(("conv 5x5 /2", y.shape))
    return shapes, y[:m].copy(), np.exp(y[m:] * np.float32(0.5))


def _step1_analysis(page: _Page, run: _Run) -> None:
    hh, ww = CROP[2:]
    mu, sigma, med = run.mu, run.sigma, run.med_sigma
    m_ch, h_lat, w_lat = mu.shape
    page.add("## 1 The analysis transform g_a")
    page.add()
    page.para(
        "`bac_ref/g_a.py`, SPEC.md §7. The encoder of Ballé et al. (2017), trained as the\n"
        "inference network of a VAE: for every latent it outputs a Gaussian posterior\n"
        "q(z | x) = N(mu, sigma^2), a best guess mu and an uncertainty sigma. The VAE was\n"
        "trained with the prior N(0, 1), so sigma = 1 means \"the image tells me nothing here\".\n"
        "The pixels become float32 in [0, 1] (`codec.as_float_image`), channel-first "
        + (f"({hh} and {ww}\nare multiples of 16, so no edge padding is needed, SPEC.md §7.2)"
           if hh % 16 == 0 and ww % 16 == 0 else
           "(padded\nby edge replication to multiples of 16, SPEC.md §7.2)")
        + "; three strided\nconvolutions divide height and width by 16:")
    chw = np.ascontiguousarray(run.x.transpose(2, 0, 1))                    # (3, H, W)
    shapes, mu_l, sigma_l = _g_a_by_layer(run.model.params, chw)
    if not (np.array_equal(mu_l, run.mu32) and np.array_equal(sigma_l, run.sigma32)):
        raise AssertionError("the layer-by-layer g_a differs from Model.analysis")
    rows = [f"{name:<20s} -> {tuple(s)}" for name, s in shapes]
    rows.append(f"{'split channels':<20s} -> mu {mu.shape}, log sigma^2 {mu.shape};"
                " sigma = exp(logvar / 2)")
    page.code(rows)
    page.para(
        f"{hh} x {ww} pixels x 3 colours = {hh * ww * 3} numbers become "
        f"{m_ch} x {h_lat} x {w_lat} = {mu.size} latents,\n"
        "each with a (mu, sigma) pair (the script checks that running the layers one by one\n"
        "gives exactly `Model.analysis`). Their spread over the crop:")
    page.code([
        "          min        median     max",
        f"mu     {_g(mu.min()):>9s}  {_g(np.median(mu)):>9s}  {_g(mu.max()):>9s}",
        f"sigma  {_g(sigma.min()):>9s}  {_g(np.median(sigma)):>9s}  {_g(sigma.max()):>9s}",
    ], floaty=(1, 2))
    counts = [int(np.sum((med >= a) & (med < b)))
              for a, b in ((0.0, 0.1), (0.1, NEAR_PRIOR), (NEAR_PRIOR, np.inf))]
    page.para(
        f"Channels differ a lot. Counting channels by their median sigma over the {h_lat * w_lat} "
        "positions:")
    page.code([
        f"median sigma < 0.1          {counts[0]:4d} channels   (sure of their value)",
        f"0.1 <= median sigma < {NEAR_PRIOR}   {counts[1]:4d} channels",
        f"median sigma >= {NEAR_PRIOR}         {counts[2]:4d} channels   "
        "(close to the prior: near-collapsed)",
    ], floaty=True)
    most, sure = int(np.argmax(med)), int(np.argmin(med))
    q1, q3 = run.prior.ppf(np.array([0.25, 0.75]), channel=most)
    n_both = len(set(run.near.tolist()) & set(run.inactive.tolist()))
    page.para(
        "A *collapsed* channel is one the encoder learned to ignore: its sigma stays near 1, the\n"
        "scale of the N(0, 1) training prior, and its mu near 0, whatever the image (posterior\n"
        f"collapse, common in VAEs). The channel closest to that in this crop is {most}: "
        "median sigma\n"
        f"{_g(med[most], 3)}, |mu| <= {_g(np.abs(mu[most]).max(), 3)} (the surest channel is "
        f"{sure}, median sigma {_g(med[sure], 3)}).\n"
        "The coding prior, fitted to posterior means of training images (SPEC.md §4.4), is\n"
        f"narrow for such a channel: channel {most}'s prior has its quartiles at {_g(q1, 3)} "
        f"and {_g(q3, 3)},\n"
        f"{_g((q3 - q1) / med[most], 2)} sigma apart. Every grid point is then about as likely "
        "under the posterior as\n"
        "the prior median (depth 0, no bits), so no bit is worth its lambda. A channel whose\n"
        "depths are all 0 is *inactive*: the payload carries one binary flag for it and nothing\n"
        f"else (SPEC.md §9.1). At lambda = {_g(LAM)}, {len(run.inactive)} channels are inactive, "
        f"among them {n_both} of the\n"
        f"{len(run.near)} channels with median sigma >= {NEAR_PRIOR}, which are:", floaty=True)
    page.code(_ids(run.near), floaty=True)


# ---------------------------------------------------------------------------
# 2 One latent in the prior's CDF space
# ---------------------------------------------------------------------------
def _pick_latent(depths):
    """The latent followed in step 2, from its depths at the three lambdas.

    Preference: three different depths; the largest lambda still spending a bit; the
    smallest depth at the smallest lambda (winners near the top of the tree); then
    coding order (c, y, x).
    """
    d = np.stack(depths)                                                    # (3, M, h, w)
    distinct = 1 + (d[0] != d[1]) + ((d[2] != d[0]) & (d[2] != d[1]))       # (M, h, w)
    order = np.lexsort((d[0].ravel(), (d[2] == 0).ravel(), -distinct.ravel()))
    # lexsort is stable: ties keep the coding order (c, y, x) of ravel()
    return tuple(int(v) for v in np.unravel_index(order[0], d.shape[1:]))


def _xi_picture(xi: float, winners: dict) -> list[str]:
    """The depth 0-3 grid points of xi as a 64-column picture, winners (*) and xi (^) marked."""
    width = 64
    rows = ["      0" + " " * 29 + "1/2" + " " * 29 + "1"]
    for d in range(4):
        line = ["-"] * (width + 1)
        line[0] = line[width] = "|"
        for k in range(1 << d):
            line[(2 * k + 1) * width // (2 << d)] = "o"
        for wd, wk in winners.values():
            if wd == d:
                line[(2 * wk + 1) * width // (2 << d)] = "*"
        rows.append(f"d={d}   " + "".join(line))
    mark = [" "] * (width + 1)
    mark[min(width, max(0, int(round(xi * width))))] = "^"
    rows.append("      " + "".join(mark).rstrip() + f"  xi = F(mu) = {xi:.4f}")
    return rows


def _candidates(prior, c: int, mu: float, sigma: float, jlo: int) -> list:
    """The at most 2N + 1 bracketing points of SPEC.md §5.2 as (d, k, zhat, D)."""
    out = []
    for d in range(MAX_DEPTH + 1):
        k_lo = ((jlo >> (MAX_DEPTH - d)) - 1) >> 1
        for k in (k_lo, k_lo + 1):
            if 0 <= k < (1 << d):
                zhat = float(prior.ppf_grid(np.array(d), np.array(k), c))
                b = (zhat - mu) / sigma
                out.append((d, k, zhat, (b * b) * 0.5))        # SPEC.md §5.1 operation order
    return out


def _step2_one_latent(page: _Page, run: _Run) -> None:
    prior = run.prior
    c, y, x = run.latent = _pick_latent([run.quants[lam].depth for lam in LAMBDAS])
    mu, sigma = float(run.mu[c, y, x]), float(run.sigma[c, y, x])
    xi = float(prior.cdf(np.array(mu), channel=c))
    level = MAX_DEPTH + 1
    jlo = int(prior.grid_floor(np.array(mu), level, channel=c))
    winners = {lam: (int(run.quants[lam].depth[c, y, x]), int(run.quants[lam].index[c, y, x]))
               for lam in LAMBDAS}
    page.add("## 2 The prior's CDF space: one latent")
    page.add()
    page.para(
        "`bac_ref/priors.py` and `bac_ref/vbq.py`, SPEC.md §4 and §5. VBQ does not round mu on\n"
        "a fixed grid. It maps mu into the prior's CDF space, xi = F(mu) in (0, 1), where the\n"
        "prior spreads evenly, and picks a point of the dyadic grid there: depth d holds the 2^d\n"
        "points xi = (2k + 1) / 2^(d+1), k = 0 .. 2^d - 1, and naming one costs d bits (d\n"
        "explicit bits, then an implied 1). The reconstruction is zhat = F^-1(xi), read from the\n"
        "prior's table (exact lookups up to depth K - 1, linear interpolation below, bit-exact\n"
        "on every platform: SPEC.md §4.2). The objective (SPEC.md §5.1; the paper's\n"
        "rate-penalised posterior log-density for a Gaussian posterior) is")
    page.code(["O(d, k) = -((zhat - mu) / sigma)^2 / 2  -  lambda * d"])
    lams = ", ".join(_g(v) for v in LAMBDAS)
    if len({wd for wd, _ in winners.values()}) == len(LAMBDAS):
        why = (f"its depth differs\nat the three lambdas {lams}, it keeps a bit at the "
               "largest, and its depths are the\nsmallest such (coding order breaks ties):")
    else:
        why = (f"no latent of this\ncrop has three different depths at lambda = {lams}; "
               "this one comes closest:")
    page.para(
        f"We follow latent (c, y, x) = ({c}, {y}, {x}), picked automatically (`_pick_latent`): "
        + why)
    page.code([
        f"mu = {_g(mu, 4)}   sigma = {_g(sigma)}   xi = F(mu) = {xi:.4f}",
        f"j_lo = {jlo}: grid points j / 2^{level} (all depths) with F^-1 <= mu (SPEC.md §4.3)",
    ], floaty=(0,))
    page.para(
        "The grid at depths 0-3 (`o`), the point chosen at a lambda (`*`) when its depth is\n"
        "at most 3, and xi (`^`):")
    page.code(_xi_picture(xi, winners), floaty=(5,))

    cand = _candidates(prior, c, mu, sigma, jlo)
    best = {}
    single = QuantilePrior(prior.table[c:c + 1])
    for lam in LAMBDAS:
        best[lam] = max(range(len(cand)),
                        key=lambda i: ((-cand[i][3]) - lam * cand[i][0], -cand[i][0]))
        if cand[best[lam]][:2] != winners[lam]:
            raise AssertionError(f"the candidate table disagrees with vbq.quantize at {lam}")
        ex = vbq.quantize_exhaustive(mu, sigma, lam, single, MAX_DEPTH)
        if (int(ex.depth), int(ex.index)) != winners[lam]:
            raise AssertionError(f"brute force disagrees with vbq.quantize at lambda {lam}")
    page.para(
        "At each depth only the two grid points bracketing xi can win (SPEC.md §5.2), so there\n"
        f"are at most 2N + 1 = {2 * MAX_DEPTH + 1} candidates. D = ((zhat - mu) / sigma)^2 / 2 "
        "is the distortion;\na `*` marks the winner of each column:")
    rows = [f"{'d':>3s} {'k':>5s}  {'xi':<12s} {'zhat':>9s} {'D':>8s}  "
            + "".join(f"{'O(lam=' + _g(v) + ')':>12s} " for v in LAMBDAS).rstrip()]
    for i, (d, k, zhat, dist) in enumerate(cand):
        cols = "".join(f"{_fixed((-dist) - lam * d)}{'*' if best[lam] == i else ' '}".rjust(13)
                       for lam in LAMBDAS)
        rows.append(f"{d:3d} {k:5d}  {_xi(d, k):<12s} {_g(zhat, 5):>9s} {_fixed(dist):>8s}"
                    f"  {cols}")
    page.code(rows, floaty=set(range(1, len(rows))))
    rows = []
    for lam in LAMBDAS:
        d, k = winners[lam]
        rows.append(f"lambda = {_g(lam):>4s}:  depth {d}, index {k}, xi = {_xi(d, k):<9s} "
                    f"zhat = {_g(float(run.quants[lam].zhat[c, y, x]), 5)}")
    page.code(rows, floaty=True)
    page.para(
        "A deeper point sits closer to mu (smaller D) but costs lambda more per bit: a small\n"
        "lambda buys precision, a large one settles for a coarse point. sigma sets the exchange\n"
        "rate: the same distance costs less distortion for an uncertain latent, so uncertain\n"
        "latents get fewer bits. `vbq.quantize` (vectorised over all latents) and the brute\n"
        f"force over all {(2 << MAX_DEPTH) - 1} grid points (`vbq.quantize_exhaustive`) pick "
        "the same points as this\ntable.")


# ---------------------------------------------------------------------------
# 3 VBQ on the whole crop
# ---------------------------------------------------------------------------
def _step3_whole_crop(page: _Page, run: _Run) -> None:
    hh, ww = CROP[2:]
    q, enc = run.q, run.enc
    hist = np.bincount(q.depth.ravel(), minlength=MAX_DEPTH + 1)
    page.add(f"## 3 VBQ on the whole crop at lambda = {_g(LAM)}")
    page.add()
    page.para(
        f"The same choice, made independently for all {q.depth.size} latents "
        f"(`codec.compress_details(..., lam={_g(LAM)}, second_pass=False, context_pass=False)`"
        "\nquantizes exactly like this; by default the codec then runs the paper's second pass,\n"
        "SPEC.md §5.4, which quantizes once more with depth replaced by its per-channel code\n"
        "length, and the context pass, SPEC.md §5.6, which prices each depth by the entropy\n"
        "model's contexts). "
        "How many latents got each depth:")
    peak = max(int(hist.max()), 1)
    page.code([f"depth {d:2d}  {int(n):5d}  " + "#" * int(round(50 * int(n) / peak))
               for d, n in enumerate(hist)])
    paper_bits = entropy_model.paper_rate_estimate(q.depth, q.index, MAX_DEPTH)
    page.para(
        f"{int(hist[0])} latents cost no bits at all (depth 0: zhat is the prior median) and "
        f"{len(run.inactive)} whole channels\nare inactive. Three ways to count the bits:")
    page.code([
        f"sum of depths (the raw bits of the objective)         {int(q.depth.sum()):8d} bits",
        f"the paper's estimate (sum of -log2 of each grid       {paper_bits:8.1f} bits",
        "  point's per-channel frequency, tables free, §9.5)",
        f"the real payload of the .bac file (step 4)            {run.payload_bits:8d} bits",
        f"the whole file, 32-byte header included               {8 * len(enc.data):8d} bits"
        f" = {enc.bpp:.3f} bpp",
    ])
    whole = codec.compress_details(run.image.pixels[..., :3], lam=LAM, model=run.model,
                                   max_depth=MAX_DEPTH, second_pass=False,
                                   context_pass=False)
    whole_paper = entropy_model.paper_rate_estimate(whole.depth, whole.index, MAX_DEPTH)
    whole_bits = 8 * (len(whole.data) - bitstream.HEADER_SIZE)
    page.para(
        f"The payload is {run.payload_bits / paper_bits:.2f}x the paper's estimate. The estimate "
        "gets its tables for free;\n"
        "the file's adaptive models start from scratch and learn while they code, which costs\n"
        f"most on a file as small as this one ({q.depth.size} latents). The whole photo "
        f"({run.image.height} x {run.image.width}) at the\n"
        f"same lambda: payload {whole_bits} bits, estimate {whole_paper:.0f} bits, "
        f"{whole_bits / whole_paper:.2f}x.")
    per_pos = q.depth.sum(axis=0)                                                 # (h, w)
    page.para(
        "Where the bits go: the sum of the depths over all channels at each latent position (one\n"
        "per 16 x 16 block; compare with the picture of the crop above):")
    page.code(["     " + " ".join(f"{'x=' + str(i):>5s}" for i in range(per_pos.shape[1]))]
              + [f"y={y}  " + " ".join(f"{int(v):5d}" for v in row)
                 for y, row in enumerate(per_pos)])
    page.para(
        f"The top row (smooth red feathers) averages {per_pos[0].mean():.0f} raw bits per "
        "position, the bottom two rows\n(the white patch and its feather lines) "
        f"{per_pos[-2:].mean():.0f}.\n\n"
        "One model serves every rate: lambda is chosen at compression time.")
    rows = ["lambda  active ch.  sum depths  payload bytes   bpp    PSNR dB"]
    for lam in LAMBDAS:
        e = enc if lam == LAM else codec.compress_details(
            run.px, lam=lam, model=run.model, max_depth=MAX_DEPTH, second_pass=False,
            context_pass=False)
        dec = codec.decompress_details(e.data, model=run.model)
        active = int(np.sum(e.depth.max(axis=(1, 2)) > 0))
        rows.append(f"{_g(lam):>6s}  {active:10d}  {int(e.depth.sum()):10d}  "
                    f"{len(e.data) - bitstream.HEADER_SIZE:13d}  {e.bpp:6.3f}  "
                    f"{codec.psnr(run.px, dec.pixels):7.1f}")
    page.code(rows, floaty=set(range(1, len(rows))))


# ---------------------------------------------------------------------------
# 4 The entropy model and the range coder
# ---------------------------------------------------------------------------
def _step4_range_coder(page: _Page, run: _Run) -> None:
    steps = run.steps
    _, payload = bitstream.parse(run.enc.data)
    replay = Encoder()
    trace = [(replay.lower, replay.range, 0)]              # state after each step
    for _, _, _, start, mass in steps:
        replay.encode_intervals([start], [mass])
        trace.append((replay.lower, replay.range, replay.num_words_written))
    final_words = replay.words()
    if replay.finish() != payload:
        raise AssertionError("the replayed coding steps do not give the codec's payload")
    page.add("## 4 The entropy model and the range coder")
    page.add()
    page.para(
        "`bac_ref/entropy_model.py` (SPEC.md §9) turns the symbols into *coding steps*: each is\n"
        "an integer interval [start, start + mass) of 2^24 = 16777216, of probability\n"
        "mass / 2^24. Per channel: its activity flag (model A); then, if active, for every\n"
        "position in raster order the depth (an adaptive model D[ctx_n, ctx_c] picked by the\n"
        "neighbours' depths and the channel's mean depth so far), the first min(d, 6) bits of\n"
        "the index, MSB first (adaptive binary models B[c, node, vote]), and any further bits\n"
        "raw (`U<r>`: r bits, uniform). All models adapt as they code: nothing is sent about\n"
        "them.")
    page.para(
        "`bac_ref/rangecoder.py` (SPEC.md §2) narrows a 64-bit window [lower, lower + range) for\n"
        "each step: scale = range >> 24, lower += scale * start, range = scale * mass. When\n"
        "range drops below 2^32 the top 32 bits of lower are final: they are written as one\n"
        "word and the window is shifted left by 32 bits (renormalisation, §2.3). The first\n"
        "steps of our crop (lower and range after the step, so the row above holds the state\n"
        "before it; bits = -log2(mass / 2^24); word: what renormalisation wrote):")
    rows = ["  #  model       sym      start      mass   bits  lower             range"
            "             word",
            f"  -  (start){' ' * 38}{trace[0][0]:016x}  {trace[0][1]:016x}"]
    shown = list(range(min(FIRST_STEPS, len(steps))))
    first = next((i for i in range(len(steps)) if trace[i + 1][2] > 0), None)
    if first is not None and first >= len(shown):          # also show the first word written
        shown += [None] + list(range(first - 1, min(first + 2, len(steps))))
    for i in shown:
        if i is None:
            rows.append("  ...")
            continue
        _, label, sym, start, mass = steps[i]
        lower, range_, n_words = trace[i + 1]
        words = " ".join(f"{w:08x}" for w in final_words[trace[i][2]:n_words])
        rows.append(f"{i + 1:3d}  {label:<11s} {sym:3d}  {start:9d}  {mass:8d}  "
                    f"{_bits(mass):5.2f}  {lower:016x}  {range_:016x}  {words}".rstrip())
    page.code(rows)
    page.para(
        "Each step multiplies range by about mass / 2^24, so a word comes out once the steps\n"
        "have used up 32 bits of information. (A carry could still add 1 to a word already\n"
        "written, SPEC.md §2.4; the words shown are the final ones.) At the end the coder\n"
        "*seals* the message with one or two words that pin a point inside the last window\n"
        f"(§2.5). Replaying all {len(steps)} steps through a fresh `rangecoder.Encoder` gives "
        "the payload\n"
        f"the codec wrote: **match** ({len(final_words)} words). By model:")
    kinds = (("A", "A   channel activity"), ("D", "D   depths"),
             ("B", "B   index bits 1-6"), ("U", "U   index bits 7+ (raw)"))
    rows = ["model                       steps     bits"]
    for key, name in kinds:
        sel = [s for s in steps if s[1].startswith(key)]
        rows.append(f"{name:<26s} {len(sel):6d} {sum(_bits(s[4]) for s in sel):8.1f}")
    rows.append(f"{'sum of -log2 p':<26s} {len(steps):6d} {run.info:8.1f}")
    rows.append(f"{'payload':<26s} {'':6s} {run.payload_bits:8d}")
    page.code(rows)
    bound = len(steps) * OVERHEAD_PER_SYMBOL_BITS + 64
    if not run.payload_bits < run.info + bound:
        raise AssertionError("the payload exceeds the bound of SPEC.md §2.10")
    page.para(
        f"The payload exceeds the information content by {run.payload_bits - run.info:.1f} bits "
        "(sealing, rounding up to\n"
        "whole words, 24-bit arithmetic); SPEC.md §2.10 bounds the excess by\n"
        f"{len(steps)} x 0.00565 + 64 = {bound:.1f} bits.")


# ---------------------------------------------------------------------------
# 5 The header
# ---------------------------------------------------------------------------
def _step5_header(page: _Page, run: _Run) -> None:
    data = run.enc.data
    header, payload = bitstream.parse(data)
    if data[20:28] != np.array([LAM], dtype=">f8").tobytes():
        raise AssertionError("lambda is not stored as big-endian binary64")
    page.add("## 5 The .bac file: header and payload")
    page.add()
    page.para(
        "`bac_ref/bitstream.py`, SPEC.md §8. A 32-byte header, big-endian, then the payload "
        "words.\nOur file, field by field:")
    fields = [
        (0, 4, "magic", "0x89 'BAC'"),
        (4, 1, "version", str(header.version)),
        (5, 1, "entropy model", f"{header.entropy_model} (SPEC.md §9)"),
        (6, 1, "max_depth N", str(header.max_depth)),
        (7, 1, "flags", f"{header.flags:03b}: grey {int(header.grey)}, lambda map "
                        f"{int(header.lambda_map)}, second pass {int(header.second_pass)}"),
        (8, 8, "model id", "first 8 bytes of sha256(model file)"),
        (16, 2, "H - 1", f"{header.height - 1}: H = {header.height}"),
        (18, 2, "W - 1", f"{header.width - 1}: W = {header.width}"),
        (20, 8, "lambda", f"binary64 {header.lam!r} (the decoder ignores it)"),
        (28, 4, "crc32", "zlib.crc32 of bytes 0-27 + payload"),
    ]
    rows = ["offset  bytes                     field          value"]
    for off, size, name, value in fields:
        rows.append(f"{off:6d}  {data[off:off + size].hex(' '):<24s}  {name:<13s}  {value}")
    words = [data[i:i + 4].hex() for i in range(bitstream.HEADER_SIZE, len(data), 4)]
    rows.append(f"{32:6d}  {' '.join(words[:2]):<24s}  payload        {len(words)} words "
                f"({len(payload)} bytes) ... {words[-1]}")
    page.code(rows)
    page.para(
        "`bitstream.parse` checks every field and the CRC before any decoding. Only N, the grey\n"
        "flag, H, W and the model id matter to the decoder: lambda only records what the\n"
        "encoder chose. One bit flipped anywhere and the CRC rejects the file.")


# ---------------------------------------------------------------------------
# 6 Decoding
# ---------------------------------------------------------------------------
def _step6_decoding(page: _Page, run: _Run) -> None:
    hh, ww = CROP[2:]
    enc, q, steps = run.enc, run.q, run.steps
    dec = codec.decompress_details(enc.data, model=run.model)
    if not (np.array_equal(dec.depth, enc.depth) and np.array_equal(dec.index, enc.index)):
        raise AssertionError("decoding did not give back the encoder's symbols")
    if not np.array_equal(dec.zhat.view(np.int64), enc.zhat.view(np.int64)):
        raise AssertionError("the decoder's zhat differs from the encoder's")
    c, y, x = run.latent
    page.add("## 6 Decoding")
    page.add()
    page.para(
        "`codec.decompress_details`: parse the header, run the same adaptive models in the\n"
        "range *decoder* (SPEC.md §2.7, §9.4: it reads a quantile and finds the symbol whose\n"
        "interval holds it, then updates the models exactly as the encoder did), look each\n"
        "point up in the prior's table (zhat = F^-1(xi), SPEC.md §4.2), run the synthesis\n"
        "transform g_s (`bac_ref/g_s.py`, SPEC.md §7) and round to 8-bit pixels (SPEC.md §10).")
    page.code([
        f"depth and index equal the encoder's       yes ({dec.depth.size} latents)",
        "zhat bit-identical to the encoder's       yes (float64, compared bit by bit)",
        f"latent ({c}, {y}, {x}): mu = {_g(run.mu[c, y, x], 4)}, zhat = "
        f"{_g(float(dec.zhat[c, y, x]), 5)}",
        f"PSNR of the {hh} x {ww} crop               {codec.psnr(run.px, dec.pixels):.1f} dB "
        f"at {enc.bpp:.3f} bpp",
    ], floaty=(2, 3))
    page.para(
        "zhat depends only on integers and the stored table, so every conforming decoder gets\n"
        "the same bits; only g_s (float32) may differ in the last digits between machines.\n"
        "Where the bits went, per channel (ideal bits, sum of -log2 p of its coding steps):")
    m_ch = q.depth.shape[0]
    per_ch = np.zeros(m_ch)
    n_per = np.zeros(m_ch, dtype=np.int64)
    for s in steps:
        per_ch[s[0]] += _bits(s[4])
        n_per[s[0]] += 1
    order = sorted(range(m_ch), key=lambda ch: (-round(per_ch[ch], 6), ch))
    rows = ["channel   bits   steps  mean depth  median sigma"]
    for ch in order[:TOP_CHANNELS]:
        rows.append(f"{ch:7d}  {per_ch[ch]:5.1f}  {n_per[ch]:6d}  "
                    f"{q.depth[ch].mean():10.2f}  {_g(run.med_sigma[ch], 3):>12s}")
    page.code(rows, floaty=set(range(1, len(rows))))
    inactive = run.inactive
    off_bits = float(per_ch[inactive].sum())
    n_on = m_ch - len(inactive)
    on_bits = sum(_bits(s[4]) for s in steps if s[1] == "A" and s[2] == 1)
    share = sum(per_ch[ch] for ch in order[:TOP_CHANNELS]) / run.info
    page.para(
        f"The top {TOP_CHANNELS} channels take {100 * share:.0f}% of the bits. An inactive channel "
        "costs only its activity\n"
        f"flag: the {len(inactive)} inactive channels cost {off_bits:.1f} bits in all, "
        f"{off_bits / max(len(inactive), 1):.2f} bits each (the {n_on} active\n"
        f"channels' flags cost {on_bits / max(n_on, 1):.2f} bits each: model A adapts to the "
        "mix of 0s and 1s). The\ninactive channels:")
    page.code(_ids(inactive))
    page.para(
        "That is the whole pipeline. Next: SPEC.md for the exact rules, the module docstrings\n"
        "for the maths, `tests/` for the invariants, and `bac-ref info file.bac --symbols s.npz`\n"
        "to look inside your own files.")


# ---------------------------------------------------------------------------
def generate():
    """The tour as Markdown, and the set of its line numbers (0-based) that show floats
    computed by g_a or g_s (platform-dependent in their last digits, SPEC.md §7.3)."""
    page = _Page()
    run = _Run()
    for part in (_intro, _step1_analysis, _step2_one_latent, _step3_whole_crop,
                 _step4_range_coder, _step5_header, _step6_decoding):
        part(page, run)
    return page.text(), page.float_lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bac_ref.tour",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--write", metavar="PATH",
                        help="write the Markdown to PATH (e.g. docs/tour.md) instead of stdout")
    args = parser.parse_args(argv)
    text, _ = generate()
    if args.write:
        directory = os.path.dirname(args.write)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(args.write, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        print(f"wrote {args.write} ({text.count(chr(10))} lines)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
