"""A guided tour: one crop of kodim23 from pixels to bits and back, with real numbers.

    python -m bac_ref.tour                          # print the tour (Markdown) to stdout
    python -m bac_ref.tour --write docs/tour.md     # regenerate the committed page

The tour runs the real pipeline (g_a, VBQ, entropy model, range coder, header, decoder,
g_s) on a 64 x 96 crop of data/kodim23.png with the shipped model and prints what every
stage sees.  Nothing in the page is typed by hand: regenerate it whenever the model, the
codec or this script changes; ``tests/test_tour.py`` fails when docs/tour.md is stale.

Honesty checks built in (the script raises AssertionError when one fails):

* the layer-by-layer g_a of step 1 gives exactly ``Model.analysis``;
* the candidate search of step 2 picks what ``vbq.quantize`` and the brute force
  ``vbq.quantize_exhaustive`` pick;
* the labelled coding steps of step 4 (a replay of the SPEC.md §9 model logic)
  reproduce, through a fresh ``rangecoder.Encoder``, the payload the codec wrote.

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
from .entropy_model import K_TREE, TOTAL
from .layers import conv2d, gdn
from .priors import QuantilePrior
from .rangecoder import Encoder

CROP = (128, 432, 64, 96)          # top, left, height, width (pixels of kodim23)
LAMBDAS = (0.3, 3.0, 30.0)         # the three rates of step 2
LAM = 3.0                          # the rate of steps 3-6
MAX_DEPTH = codec.DEFAULT_MAX_DEPTH
FIRST_STEPS = 14                   # coding steps shown in full in step 4
TOP_CHANNELS = 8
COMMAND = "python -m bac_ref.tour --write docs/tour.md"


class _Page:
    """Markdown lines, remembering which ones show floats from g_a / g_s."""

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

    def code(self, rows, floaty_rows=()) -> None:
        """A fenced block; ``floaty_rows``: indices (into rows) that show g_a/g_s floats."""
        self.add("```")
        for i, row in enumerate(rows):
            self.add(row, floaty_rows is True or (floaty_rows is not False and i in floaty_rows))
        self.add("```")
        self.add()

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n") + "\n"


def _g(x: float, digits: int = 4) -> str:
    """A float for display: ``digits`` significant digits, no '-0'."""
    s = f"{x:.{digits}g}"
    return "0" if s in ("-0", "0") else s


def _f(x: float, decimals: int = 3) -> str:
    s = f"{x:.{decimals}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _ids(values, width: int = 88) -> list[str]:
    """A list of integers wrapped to lines of at most ``width`` characters."""
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


# ---------------------------------------------------------------------------
# The coding steps, labelled (a replay of entropy_model.encode_symbols, SPEC.md §9)
# ---------------------------------------------------------------------------
def coding_steps(depth: np.ndarray, index: np.ndarray, max_depth: int) -> list:
    """Every coding step of the payload as (channel, model, symbol, start, mass).

    The same model logic as :func:`bac_ref.entropy_model.encode_symbols` (it uses that
    module's helpers), step by step and with names: "A" (channel activity, §9.1),
    "D[ctx_n,ctx_c]" (depth, §9.2), "B[c,node,vote]" (index bit, §9.3), "U<r>" (r raw
    index bits, §2.9).  :func:`main` checks that coding these intervals gives the payload
    the codec wrote.
    """
    em = entropy_model
    m, h, w = depth.shape
    steps = []
    active_c = [1, 1]
    depth_models = em._DepthModels(max_depth)
    node_c0 = [1] * (m * 3 << K_TREE)
    node_c1 = [1] * (m * 3 << K_TREE)
    for c in range(m):
        d = depth[c].ravel().tolist()
        k = index[c].ravel().tolist()
        active = 1 if any(d) else 0
        m0 = em._mass0(*active_c)
        steps.append((c, "A", active, 0 if not active else m0, m0 if not active else TOTAL - m0))
        em._update_binary(active_c, active)
        if not active:
            continue
        base_c = c * 3 << K_TREE
        depth_sum = 0
        for y in range(h):
            for x in range(w):
                pos = y * w + x
                r = d[pos]
                ctx = em._depth_context(d, y, x, w, max_depth, depth_sum)
                table = depth_models.tables[ctx]
                label = f"D[{ctx // 8},{ctx % 8 - 1}]"           # ctx = 8 ctx_n + ctx_c + 1
                steps.append((c, label, r, table[r], table[r + 1] - table[r]))
                depth_models.update(ctx, r)
                depth_sum += r
                v = k[pos]
                node = 1
                for level in range(min(r, K_TREE)):
                    bit = (v >> (r - 1 - level)) & 1
                    vote = em._vote(d, k, y, x, w, level, node - (1 << level))
                    key = base_c + node * 3 + vote
                    c0, c1 = node_c0[key], node_c1[key]
                    m0 = em._mass0(c0, c1)
                    label = f"B[{c},{node},{vote}]"
                    if bit:
                        steps.append((c, label, 1, m0, TOTAL - m0))
                        c1 += em.INCREMENT
                    else:
                        steps.append((c, label, 0, 0, m0))
                        c0 += em.INCREMENT
                    if c0 + c1 > em.LIMIT:
                        c0, c1 = (c0 + 1) >> 1, (c1 + 1) >> 1
                    node_c0[key], node_c1[key] = c0, c1
                    node = 2 * node + bit
                rest = r - K_TREE
                if rest > 0:
                    low = v & ((1 << rest) - 1)
                    steps.append((c, f"U{rest}", low, low << (24 - rest), 1 << (24 - rest)))
    return steps


def _bits(mass: int) -> float:
    return -math.log2(mass / TOTAL)


# ---------------------------------------------------------------------------
# The tour
# ---------------------------------------------------------------------------
def _ascii_crop(px: np.ndarray) -> list[str]:
    """Luminance of the crop as characters, one per 8 x 2 pixels, latent cells boxed."""
    ramp = " .:-=+*#%@"
    p = px.astype(np.int64)
    lum = (299 * p[..., 0] + 587 * p[..., 1] + 114 * p[..., 2]) // 1000      # (H, W) in 0..255
    hh, ww = lum.shape
    cells = lum.reshape(hh // 8, 8, ww // 2, 2).sum(axis=(1, 3)) // 16      # (8, 48) in 0..255
    w_lat = ww // 16
    top = "     " + "".join(f"x={x:<7d}"[:8] + " " for x in range(w_lat)).rstrip()
    rule = "    +" + "+".join(["-" * 8] * w_lat) + "+"
    out = [top, rule]
    for i, row in enumerate(cells):
        chars = "".join(ramp[int(v) * len(ramp) // 256] for v in row)
        label = f"y={i // 2}" if i % 2 == 0 else "   "
        out.append(f"{label} |" + "|".join(chars[j:j + 8] for j in range(0, len(chars), 8)) + "|")
        if i % 2 == 1:
            out.append(rule)
    return out


def _g_a_by_layer(params, x: np.ndarray):
    """g_a as bac_ref.g_a.analysis computes it, keeping the intermediate shapes."""
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


def _pick_latent(depths):
    """The latent followed in step 2: its depth differs at all three lambdas.

    Preference: three different depths, the largest lambda still spending a bit, the
    smallest depth at the smallest lambda (so the winners sit near the top of the
    tree), then coding order (c, y, x).
    """
    d = np.stack(depths)                                                   # (3, M, h, w)
    distinct = 1 + (d[0] != d[1]) + (d[1] != d[2]) + ((d[0] != d[2]) & (d[0] != d[1])
                                                      & (d[1] != d[2]))
    order = np.lexsort((d[0].ravel(), (d[2] == 0).ravel(), -distinct.ravel()))
    # lexsort is stable, so ties keep the coding order (c, y, x) of ravel()
    return tuple(int(v) for v in np.unravel_index(order[0], d.shape[1:]))


def _xi_picture(xi: float, winners: dict) -> list[str]:
    """The depth 0-3 grid points of xi as a 64-column picture, xi = F(mu) marked."""
    width = 64
    rows = ["      0" + " " * 29 + "1/2" + " " * 29 + "1"]
    for d in range(4):
        line = ["-"] * (width + 1)
        line[0] = line[width] = "|"
        for k in range(1 << d):
            pos = (2 * k + 1) * width // (2 << d)
            line[pos] = "o"
        for lam, (wd, wk) in winners.items():
            if wd == d:
                line[(2 * wk + 1) * width // (2 << d)] = "*"
        rows.append(f"d={d}   " + "".join(line))
    mark = [" "] * (width + 1)
    mark[min(width, max(0, int(round(xi * width))))] = "^"
    rows.append("      " + "".join(mark).rstrip() + f"  xi = F(mu) = {_f(xi, 4)}")
    return rows


def generate():
    """The tour as Markdown, and the set of its line numbers (0-based) that show floats
    computed by g_a or g_s (platform-dependent in their last digits, SPEC.md §7.3)."""
    from .cli import find_demo_image
    from .imageio import read_image

    page = _Page()
    model = codec.get_model(None)
    prior = codec.model_prior(model)
    top, left, hh, ww = CROP
    image = read_image(find_demo_image())
    px = np.ascontiguousarray(image.pixels[top:top + hh, left:left + ww, :3])   # (64, 96, 3)
    x, _ = codec.as_float_image(px)                                           # (H, W, 3) float32
    mu32, sigma32 = model.analysis(x)                                          # (M, h, w) float32
    mu, sigma = mu32.astype(np.float64), sigma32.astype(np.float64)
    m_ch, h_lat, w_lat = mu.shape
    steps_meta = model.meta.get("steps")

    # -- introduction -------------------------------------------------------------------
    page.add("# A guided tour: from a photo to bits and back")
    page.add()
    page.para(
        "<!-- Generated by `" + COMMAND + "`; do not edit by hand. -->")
    page.para(
        "This page follows one small crop of a photo through the whole `bac_ref` pipeline and\n"
        "prints what every stage computes. Every number comes from running the code with the\n"
        "shipped model (`" + COMMAND + "` regenerates the page;\n"
        "`tests/test_tour.py` fails when it is out of date). Keep [SPEC.md](../SPEC.md) and the\n"
        "module docstrings at hand: each step names the section and the module it shows.\n"
        "Reading time: about 30 minutes.")
    page.code([
        f"model  {os.path.basename(str(model.path))}, id {model.model_id[:16]} "
        f"(sha256 of the file, SPEC.md §6.3)",
        f"       {model.N} hidden channels, M = {m_ch} latent channels"
        + (f", {steps_meta} training steps" if steps_meta is not None else ""),
        f"prior  {prior.num_channels} per-channel quantile tables of {prior.table.shape[1]} values"
        f" (K = {prior.table_bits}, SPEC.md §4.2)",
        f"VBQ    max_depth N = {MAX_DEPTH}: up to {MAX_DEPTH} bits per latent (SPEC.md §4.1)",
    ])
    page.para(
        f"The crop: rows {top}-{top + hh - 1} and columns {left}-{left + ww - 1} of "
        f"`data/kodim23.png` ({hh} x {ww} pixels), the red\n"
        "parrot's face: smooth red feathers at the top, the white patch with its lines of small\n"
        "red feathers, the edge of the eye on the right. Its luminance, one character per 8 x 2\n"
        "pixels, boxed in the 16 x 16 blocks that become one latent position each:")
    page.code(_ascii_crop(px))

    # -- 1 analysis transform ----------------------------------------------------------
    page.add("## 1 The analysis transform g_a")
    page.add()
    page.para(
        "`bac_ref/g_a.py`, SPEC.md §7. The encoder of Ballé et al. (2017), trained as the\n"
        "inference network of a VAE: for every latent it outputs a Gaussian posterior\n"
        "q(z | x) = N(mu, sigma^2), a best guess mu and an uncertainty sigma. The VAE was\n"
        "trained with the prior N(0, 1), so sigma = 1 means \"the image tells me nothing here\".\n"
        "The pixels become float32 in [0, 1] (`codec.as_float_image`), channel-first; three\n"
        "strided convolutions divide height and width by 16:")
    chw = np.ascontiguousarray(x.transpose(2, 0, 1))                          # (3, H, W)
    shapes, mu_l, sigma_l = _g_a_by_layer(model.params, chw)
    if not (np.array_equal(mu_l, mu32) and np.array_equal(sigma_l, sigma32)):
        raise AssertionError("the layer-by-layer g_a differs from Model.analysis")
    rows = [f"{name:<20s} -> {tuple(s)}" for name, s in shapes]
    rows.append(f"{'split channels':<20s} -> mu {mu.shape}, log sigma^2 {mu.shape};"
                " sigma = exp(logvar / 2)")
    page.code(rows)
    page.para(
        f"{hh} x {ww} pixels x 3 colours = {hh * ww * 3} numbers become "
        f"{m_ch} x {h_lat} x {w_lat} = {mu.size} latents,\n"
        f"each with a (mu, sigma) pair (the script checks that running the layers one by one\n"
        f"gives exactly `Model.analysis`). Their spread over the crop:")
    med_sigma = np.median(sigma, axis=(1, 2))                                  # (M,)
    page.code([
        "          min        median     max",
        f"mu     {_g(mu.min()):>9s}  {_g(np.median(mu)):>9s}  {_g(mu.max()):>9s}",
        f"sigma  {_g(sigma.min()):>9s}  {_g(np.median(sigma)):>9s}  {_g(sigma.max()):>9s}",
    ], floaty_rows=(1, 2))
    bins = [(0.0, 0.1), (0.1, 0.5), (0.5, np.inf)]
    counts = [int(np.sum((med_sigma >= a) & (med_sigma < b))) for a, b in bins]
    page.para(
        "Channels differ a lot. Counting channels by their median sigma over the 24 positions:",)
    page.code([
        f"median sigma < 0.1          {counts[0]:4d} channels   (sure of their value: worth many bits)",
        f"0.1 <= median sigma < 0.5   {counts[1]:4d} channels",
        f"median sigma >= 0.5         {counts[2]:4d} channels   (close to the prior: near-collapsed)",
    ], floaty_rows=True)
    near = np.nonzero(med_sigma >= 0.5)[0]
    most = int(np.argmax(med_sigma))
    sure = int(np.argmin(med_sigma))
    iqr = prior.ppf(np.array([0.25, 0.75]), channel=most)
    page.para(
        "A *collapsed* channel is one the encoder learned to ignore: its sigma stays near 1, the\n"
        "scale of the N(0, 1) training prior, and its mu near 0, whatever the image (posterior\n"
        "collapse, common in VAEs). The most collapsed channel of this crop is "
        f"{most}: median sigma\n"
        f"{_g(med_sigma[most], 3)}, |mu| <= {_g(np.abs(mu[most]).max(), 3)}; the surest is "
        f"channel {sure}, median sigma {_g(med_sigma[sure], 3)}.\n"
        "The coding prior (fitted to posterior means of training images, SPEC.md §4.4) is\n"
        f"narrow for such a channel: channel {most}'s prior has its quartiles at "
        f"{_g(iqr[0], 3)} and {_g(iqr[1], 3)},\n"
        "well inside one sigma. So every grid point is almost as likely under the posterior as\n"
        "the prior median, and VBQ spends 0 bits on it: depth 0 everywhere. A channel whose depths\n"
        "are all 0 is *inactive*: the payload carries one binary flag for it and nothing else\n"
        "(SPEC.md §9.1). Step 6 shows the price of those flags. The channels with median\n"
        "sigma >= 0.5 here:", floaty=True)
    page.code(_ids(near), floaty_rows=True)

    # -- 2 one latent in CDF space -------------------------------------------------------
    quants = {lam: vbq.quantize(mu, sigma, lam, prior, MAX_DEPTH) for lam in LAMBDAS}
    c, yy, xx = _pick_latent([quants[lam].depth for lam in LAMBDAS])
    mu1, s1 = float(mu[c, yy, xx]), float(sigma[c, yy, xx])
    xi1 = float(prior.cdf(np.array(mu1), channel=c))
    g = MAX_DEPTH + 1
    jlo = int(prior.grid_floor(np.array(mu1), g, channel=c))
    page.add("## 2 The prior's CDF space: one latent")
    page.add()
    page.para(
        "`bac_ref/priors.py` and `bac_ref/vbq.py`, SPEC.md §4 and §5. VBQ does not round mu on\n"
        "a fixed grid. It maps mu into the prior's CDF space, xi = F(mu) in (0, 1), where the prior\n"
        "spreads evenly, and picks a point of the dyadic grid there: depth d holds the 2^d\n"
        "points xi = (2k + 1) / 2^(d+1), k = 0 .. 2^d - 1, and naming one costs d bits (d explicit\n"
        "bits, then an implied 1). The reconstruction is zhat = F^-1(xi), read from the prior's\n"
        "table (exact lookups up to depth K - 1, linear interpolation below, bit-exact on\n"
        "every platform: SPEC.md §4.2). The objective (SPEC.md §5.1; the paper's rate-penalised\n"
        "posterior log-density for a Gaussian posterior) is")
    page.code(["O(d, k) = -((zhat - mu) / sigma)^2 / 2  -  lambda * d"])
    page.para(
        f"We follow latent (c, y, x) = ({c}, {yy}, {xx}), picked by `_pick_latent` as the first one "
        "whose depth differs at\n"
        f"all three lambdas {', '.join(_g(v) for v in LAMBDAS)} (with at least one bit at the "
        "largest):")
    page.code([
        f"mu = {_g(mu1, 5)}   sigma = {_g(s1, 4)}   xi = F(mu) = {_g(xi1, 5)}",
        f"j_lo = {jlo}: grid points j / 2^{g} (all depths) with F^-1 <= mu (SPEC.md §4.3)",
    ], floaty_rows=(0,))
    winners = {lam: (int(quants[lam].depth[c, yy, xx]), int(quants[lam].index[c, yy, xx]))
               for lam in LAMBDAS}
    page.para(
        "The grid at depths 0-3 (o), the point chosen at a lambda (*) when its depth is <= 3,\n"
        "and xi (^):")
    page.code(_xi_picture(xi1, winners), floaty_rows=(5,))
    page.para(
        "At each depth only the two grid points bracketing xi can win (SPEC.md §5.2), so there\n"
        f"are at most 2N + 1 = {2 * MAX_DEPTH + 1} candidates. D = ((zhat - mu) / sigma)^2 / 2 "
        "is the distortion; * marks\n"
        "the winner of each column:")
    rows = ["  d     k  xi              zhat          D     " +
            "".join(f"  O(lam={_g(v)})"[:13].rjust(13) for v in LAMBDAS)]
    best = {}
    cand = []
    for d in range(MAX_DEPTH + 1):
        mm = jlo >> (MAX_DEPTH - d)
        k_lo = (mm - 1) >> 1
        for k in (k_lo, k_lo + 1):
            if 0 <= k < (1 << d):
                zh = float(prior.ppf_grid(np.array(d), np.array(k), c))
                b = (zh - mu1) / s1
                dist = (b * b) * 0.5                          # SPEC.md §5.1 operation order
                cand.append((d, k, zh, dist))
    for lam in LAMBDAS:
        obj = [((-dist) - lam * d, -d) for d, k, zh, dist in cand]
        best[lam] = max(range(len(cand)), key=lambda i: obj[i])
        d, k = cand[best[lam]][:2]
        if (d, k) != winners[lam]:
            raise AssertionError(f"tour's candidate search disagrees with vbq.quantize at {lam}")
        ex = vbq.quantize_exhaustive(mu1, s1, lam, QuantilePrior(prior.table[c:c + 1]), MAX_DEPTH)
        if (int(ex.depth), int(ex.index)) != (d, k):
            raise AssertionError(f"brute force disagrees with vbq.quantize at lambda {lam}")
    for i, (d, k, zh, dist) in enumerate(cand):
        xi_s = str(Fraction(2 * k + 1, 2 << d))
        cols = ""
        for lam in LAMBDAS:
            o = (-dist) - lam * d
            cols += f"{_g(o, 4)}{'*' if best[lam] == i else ' '}".rjust(13)
        rows.append(f"{d:3d} {k:5d}  {xi_s:<12s} {_g(zh, 5):>9s} {_g(dist, 4):>10s}  {cols}")
    page.code(rows, floaty_rows=set(range(1, len(rows))))
    lines = []
    for lam in LAMBDAS:
        d, k = winners[lam]
        zh = float(quants[lam].zhat[c, yy, xx])
        lines.append(f"lambda = {_g(lam):>4s}:  depth {d}, index {k}, xi = "
                     f"{str(Fraction(2 * k + 1, 2 << d)):<9s} zhat = {_g(zh, 5)}")
    page.code(lines, floaty_rows=True)
    page.para(
        "A deeper point sits closer to mu (smaller D) but costs lambda more per bit: a small\n"
        "lambda buys precision, a large one settles for a coarse point. sigma sets the exchange\n"
        "rate: the same distance costs less distortion for an uncertain latent, so uncertain\n"
        "latents get fewer bits. `vbq.quantize` (vectorised over all latents) and the brute\n"
        f"force over all {(2 << MAX_DEPTH) - 1} grid points (`vbq.quantize_exhaustive`) pick the "
        "same points as this table.")

    # -- 3 VBQ on the whole crop ---------------------------------------------------------
    q = quants[LAM]
    enc = codec.compress_details(px, lam=LAM, model=model, max_depth=MAX_DEPTH)
    if not (np.array_equal(enc.depth, q.depth) and np.array_equal(enc.index, q.index)):
        raise AssertionError("the codec quantized differently from vbq.quantize")
    hist = np.bincount(q.depth.ravel(), minlength=MAX_DEPTH + 1)
    page.add(f"## 3 VBQ on the whole crop at lambda = {_g(LAM)}")
    page.add()
    page.para(
        f"The same choice, made independently for all {q.depth.size} latents "
        f"(`codec.compress_details(..., lam={_g(LAM)})`\nquantizes exactly like this). "
        "How many latents got each depth:")
    peak = max(int(hist.max()), 1)
    rows = [f"depth {d:2d}  {int(n):5d}  " + "#" * int(round(50 * int(n) / peak))
            for d, n in enumerate(hist)]
    page.code(rows)
    raw_bits = int(q.depth.sum())
    paper = entropy_model.paper_rate_estimate(q.depth, q.index, MAX_DEPTH)
    payload_bits = 8 * (len(enc.data) - bitstream.HEADER_SIZE)
    per_pos = q.depth.sum(axis=0)                                                 # (h, w)
    inactive = np.nonzero(q.depth.max(axis=(1, 2)) == 0)[0]
    page.para(
        f"{int(hist[0])} latents cost no bits at all (depth 0: zhat is the prior median) and "
        f"{len(inactive)} whole channels are\ninactive. Three ways to count the bits:")
    page.code([
        f"sum of depths (the raw bits of the objective)            {raw_bits:6d} bits",
        f"the paper's estimate (sum of -log2 per-channel frequency  {paper:8.1f} bits",
        "  of each grid point, tables free; SPEC.md §9.5)",
        f"the real payload of the .bac file (step 4)               {payload_bits:6d} bits",
        f"the whole file, 32-byte header included                  {8 * len(enc.data):6d} bits"
        f" = {8 * len(enc.data) / (hh * ww):.3f} bpp",
    ])
    page.para(
        "Where the bits go: the sum of the depths over all channels at each latent position (one\n"
        "per 16 x 16 block of the crop above). Texture costs bits, smooth areas do not:")
    page.code([f"y={yy_} " + " ".join(f"{int(v):5d}" for v in row)
               for yy_, row in enumerate(per_pos)])
    rows = ["lambda  active ch.  sum depths  payload bytes   bpp    PSNR dB"]
    for lam in LAMBDAS:
        e = enc if lam == LAM else codec.compress_details(px, lam=lam, model=model,
                                                          max_depth=MAX_DEPTH)
        dec = codec.decompress_details(e.data, model=model)
        act = int(np.sum(e.depth.max(axis=(1, 2)) > 0))
        rows.append(f"{_g(lam):>6s}  {act:10d}  {int(e.depth.sum()):10d}  "
                    f"{len(e.data) - bitstream.HEADER_SIZE:13d}  {e.bpp:6.3f}  "
                    f"{codec.psnr(px, dec.pixels):7.2f}")
    page.para("One model, every rate: lambda is chosen at compression time.")
    page.code(rows, floaty_rows=set(range(1, len(rows))))

    # -- 4 the range coder ---------------------------------------------------------------
    header, payload = bitstream.parse(enc.data)
    steps = coding_steps(q.depth, q.index, MAX_DEPTH)
    replay = Encoder()
    trace = [(replay.lower, replay.range, 0)]
    for _, _, _, start, mass in steps:
        replay.encode_intervals([start], [mass])
        trace.append((replay.lower, replay.range, replay.num_words_written))
    final_words = replay.words()
    match = replay.finish() == payload
    if not match:
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
        "raw (U<r>: r bits, uniform). All models adapt as they code: nothing is sent about them.")
    page.para(
        "`bac_ref/rangecoder.py` (SPEC.md §2) narrows a 64-bit window [lower, lower + range) for\n"
        "each step: scale = range >> 24, lower += scale * start, range = scale * mass. When\n"
        "range drops below 2^32 the top 32 bits of lower are final: they are written as one word\n"
        "and the window is shifted left by 32 bits (renormalisation, §2.3). The first steps of\n"
        "our crop (lower and range after the step; bits = -log2(mass / 2^24)):")
    rows = ["  #  model       sym      start      mass   bits  lower             range             word",
            f"  -  (start)                                      {trace[0][0]:016x}  {trace[0][1]:016x}"]
    shown = list(range(min(FIRST_STEPS, len(steps))))
    first_word = next((i for i in range(len(steps)) if trace[i + 1][2] > 0), None)
    if first_word is not None and first_word >= len(shown):
        shown += [None] + [i for i in range(first_word - 1, min(first_word + 2, len(steps)))]
    for i in shown:
        if i is None:
            rows.append("  ...")
            continue
        ch, label, sym, start, mass = steps[i]
        low, rng, nw = trace[i + 1]
        new = final_words[trace[i][2]:nw]
        words = " ".join(f"{w_:08x}" for w_ in new)
        rows.append(f"{i + 1:3d}  {label:<11s} {sym:3d}  {start:9d}  {mass:8d}  {_bits(mass):5.2f}"
                    f"  {low:016x}  {rng:016x}  {words}".rstrip())
    page.code(rows)
    n_steps = len(steps)
    info = sum(_bits(s[4]) for s in steps)
    page.para(
        "Each step multiplies range by about mass / 2^24, so a word comes out once the steps\n"
        "have used up 32 bits of information. (A carry could still add 1 to a word already\n"
        "written, SPEC.md §2.4; the words shown are the final ones.) At the end the coder\n"
        "*seals* the message with one or two words that pin a point inside the last window\n"
        f"(§2.5). Replaying all {n_steps} steps through a fresh `rangecoder.Encoder` gives the "
        "payload\n"
        f"the codec wrote: **{'match' if match else 'MISMATCH'}** ({len(final_words)} words). "
        "By model:")
    kinds = {"A": "A      channel activity", "D": "D      depths", "B": "B      index bits 1-6",
             "U": "U      index bits 7+ (raw)"}
    rows = ["model                       steps     bits"]
    for key, name in kinds.items():
        sel = [s for s in steps if s[1].startswith(key)]
        rows.append(f"{name:<26s} {len(sel):6d} {sum(_bits(s[4]) for s in sel):8.1f}")
    rows.append(f"{'sum of -log2 p':<26s} {n_steps:6d} {info:8.1f}")
    rows.append(f"{'payload':<26s} {'':6s} {payload_bits:8d}")
    page.code(rows)
    page.para(
        f"The payload exceeds the information content by {payload_bits - info:.1f} bits: "
        "sealing and rounding to whole\nwords, within the bound of SPEC.md §2.10 "
        "(< 0.0057 bits per step + 64 bits).")

    # -- 5 the header --------------------------------------------------------------------
    data = enc.data
    page.add("## 5 The .bac file: header and payload")
    page.add()
    page.para(
        "`bac_ref/bitstream.py`, SPEC.md §8. A 32-byte header, big-endian, then the payload "
        "words.\nOur file, field by field:")
    lam_bytes = data[20:28]
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
    words = [data[i:i + 4].hex() for i in range(32, len(data), 4)]
    rows.append(f"{32:6d}  {' '.join(words[:2]):<24s}  payload        {len(words)} words "
                f"({len(payload)} bytes): {' '.join(words[:3])} ... {words[-1]}")
    page.code(rows)
    assert lam_bytes == np.array([LAM], dtype=">f8").tobytes()
    page.para(
        "`bitstream.parse` checks every field and the CRC before any decoding. Only N, the grey\n"
        "flag, H, W and the model id matter to the decoder: lambda only records what the encoder\n"
        "chose. One bit flipped anywhere and the CRC rejects the file.")

    # -- 6 decoding ----------------------------------------------------------------------
    dec = codec.decompress_details(data, model=model)
    same_sym = np.array_equal(dec.depth, enc.depth) and np.array_equal(dec.index, enc.index)
    same_z = np.array_equal(dec.zhat.view(np.int64), enc.zhat.view(np.int64))
    if not (same_sym and same_z):
        raise AssertionError("decoding did not give back the encoder's symbols and zhat")
    page.add("## 6 Decoding")
    page.add()
    page.para(
        "`codec.decompress_details`: parse the header, run the same adaptive models in the\n"
        "range *decoder* (SPEC.md §2.7, §9.4: it reads a quantile and finds the symbol whose\n"
        "interval holds it, then updates the models exactly as the encoder did), look each\n"
        "point up in the prior's table (zhat = F^-1(xi), SPEC.md §4.2), run the synthesis\n"
        "transform g_s (`bac_ref/g_s.py`, SPEC.md §7) and round to 8-bit pixels (SPEC.md §10).")
    page.code([
        f"depth and index equal the encoder's       {'yes' if same_sym else 'NO'} "
        f"({dec.depth.size} latents)",
        f"zhat bit-identical to the encoder's       {'yes' if same_z else 'NO'} "
        "(float64, compared bit by bit)",
        f"latent ({c}, {yy}, {xx}): mu = {_g(mu1, 5)}, zhat = "
        f"{_g(float(dec.zhat[c, yy, xx]), 5)}",
        f"PSNR of the {hh} x {ww} crop               {codec.psnr(px, dec.pixels):.2f} dB "
        f"at {enc.bpp:.3f} bpp",
    ], floaty_rows=(2, 3))
    page.para(
        "zhat depends only on integers and the stored table, so every conforming decoder gets\n"
        "the same bits; only g_s (float32) may differ in the last digits between machines.\n"
        "Where the bits went, per channel (ideal bits, sum of -log2 p of its coding steps):")
    per_ch = np.zeros(m_ch)
    n_per = np.zeros(m_ch, dtype=np.int64)
    for s in steps:
        per_ch[s[0]] += _bits(s[4])
        n_per[s[0]] += 1
    order = sorted(range(m_ch), key=lambda ch: (-round(per_ch[ch], 6), ch))
    rows = ["channel   bits   steps  mean depth  median sigma"]
    for ch in order[:TOP_CHANNELS]:
        rows.append(f"{ch:7d}  {per_ch[ch]:5.1f}  {n_per[ch]:6d}  "
                    f"{q.depth[ch].mean():10.2f}  {_g(med_sigma[ch], 3):>12s}")
    page.code(rows, floaty_rows=set(range(1, len(rows))))
    act_bits = per_ch[list(inactive)].sum() if len(inactive) else 0.0
    share = sum(per_ch[ch] for ch in order[:TOP_CHANNELS]) / info if info else 0.0
    page.para(
        f"The top {TOP_CHANNELS} channels take {100 * share:.0f}% of the bits. The {len(inactive)} "
        f"inactive channels cost {act_bits:.1f} bits in all\n"
        f"({act_bits / max(len(inactive), 1):.2f} bits each: the activity model learns that most "
        "flags are 0); of the\n"
        f"{len(near)} near-collapsed channels of step 1, "
        f"{len(set(near.tolist()) & set(inactive.tolist()))} are inactive. The inactive channels:")
    page.code(_ids(inactive))
    page.para(
        "That is the whole pipeline. Next: SPEC.md for the exact rules, the module docstrings\n"
        "for the maths, `tests/` for the invariants, and `bac-ref info file.bac --symbols s.npz`\n"
        "to look inside your own files.")
    return page.text(), page.float_lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bac_ref.tour", description=__doc__.split("\n")[0])
    parser.add_argument("--write", metavar="PATH", help="write the Markdown here instead of stdout")
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
