r"""Rate control: the lambda for a target size (``--bpp``) or quality (``--psnr``).

lambda is the codec's only rate knob (:mod:`bac_ref.codec`); a target is met by
searching lambda, on the :class:`~bac_ref.codec.Encoder` of the image (g_a runs
once, and VBQ's lambda-independent half once: :class:`bac_ref.vbq.Candidates`, so a
further lambda costs about a sixth of the first).  What one step costs decides the
method:

* **size**: the rate of a lambda is *predicted* without range coding it, from
  the ideal code length of its symbols (``Encoder.rate``: the paper's estimate,
  sum of -log2 of the per-channel frequencies).  Real files are 0.88-1.04 times
  that estimate (README; about 0.88 times it with the context pass, SPEC.md §5.6,
  whose depths the entropy model's contexts predict better than the estimate's
  per-channel frequencies do), and the ratio changes slowly with lambda.  So: solve
  est(lambda) = target / ratio on the estimate, code that one candidate,
  measure the real ratio, correct, and code again only if the file misses the
  target by more than 1.5 %.  Usually 3-5 VBQ runs and one or two codings.
* **quality**: PSNR needs g_s (``Encoder.quality``, a trial decode).  PSNR falls
  about 2 dB per unit of t = ln(lambda) above lambda ~ 1 and flattens towards the
  ceiling below lambda ~ 0.1; in v = W softplus((t - ln 0.135) / W), W = 0.63, it is
  close to a straight line on both sides (fitted on training photos).  So the search
  steps in v, from a prior slope of -2 dB per unit, and hits [target, target + 0.05 dB]
  in 2-4 trial decodes; the file is coded once.

Both searches use the safeguarded search of :func:`solve`: secant steps from a prior
slope until the root is bracketed, then inverse quadratic interpolation (or secant,
or false position) inside the bracket, and a bisection whenever the bracket has not
halved in two steps (Brent's rule: robust where PSNR is flat near the ceiling and
steep below it).

Out of reach.  Quality stops rising as lambda -> 0: the *ceiling* is the best PSNR
seen, starting with the one at the smallest lambda of the range.  A ``--psnr``
target above the ceiling, or a ``--bpp`` target whose lambda lies where the quality
has stopped rising, gives instead the smallest file within ``QUALITY_SLACK`` (0.1 dB)
of the ceiling (the *knee*), never the larger file that buys nothing; the progress
callback hears it as soon as it is known, and ``Encoded.note`` says so.  The knee
search stops at [goal, goal + 0.05 dB] or when the next larger lambda tried (which
misses the goal) would save less than 3 % of the file.  A ``--bpp`` target whose
lambda is below ``KNEE_CHECK_LAM`` looks for the ceiling and the knee first (one
trial decode at the smallest lambda, then 1-3), and codes only the file it returns.
A target below the smallest file gives the smallest file.
"""
from __future__ import annotations

import math
import time

__all__ = ["encode_for_bpp", "encode_for_psnr", "solve", "QUALITY_SLACK", "BPP_TOL",
           "PSNR_TOL"]

BPP_TOL = 0.015             # accept a coded file within 1.5 % of the target (promise: 2 %)
PSNR_TOL = 0.05             # accept PSNR in [target, target + 0.05] dB
QUALITY_SLACK = 0.1         # "quality stops rising": within 0.1 dB of the ceiling
KNEE_CHECK_LAM = 0.04       # a bpp target's lambda below this is checked against the ceiling
START_LAM = 3.0             # first guess (the CLI's default lambda)
BPP_SLOPE = -0.45           # d ln(bpp) / d ln(lambda), a typical photo (prior for step 1)
MAX_STEP = 5.0              # largest step in ln(lambda) (or v) before a bracket exists
KNEE_RATE_TOL = 1.03        # the knee search stops when one more step would save < 3 % of the file
RATIO0 = 1.01               # first guess of real size / estimate, plus ...
RATIO0_CONTEXT = 0.89       # ... with the context pass (SPEC.md §5.6), whose symbols the
                            # entropy model codes below the paper's estimate: median 0.880
                            # against 0.998 without it, 10 training photos x 7 lambdas 0.1-100
OVERHEAD_BITS = 2500        # ... the adaptive models' learning cost (matters on small images)
LAMBDA_RANGE = (1e-4, 1e5)  # where the searches look
RECENT_LATENTS = 1 << 21    # up to this many latents a search keeps its last two VBQ runs


# PSNR against t = ln(lambda) falls about 2 dB per unit where lambda >= 1 and flattens
# towards the ceiling below lambda ~ 0.1.  In v = W softplus((t - T_KNEE) / W) it is close
# to a straight line on both sides (fitted on training photos: T_KNEE = ln 0.135, W = 0.63;
# the ratio of slopes between lambda 0.01 and 100 stays within about 1.5x), so the PSNR
# search and the knee search step in v: fewer trial decodes than steps in t.
V_KNEE = math.log(0.135)
V_WIDTH = 0.63
V_SLOPE = -2.0              # d PSNR / d v in dB, a typical photo (prior for step 1)


def _v_of_t(t):
    x = (t - V_KNEE) / V_WIDTH
    return V_WIDTH * (max(x, 0.0) + math.log1p(math.exp(-abs(x))))


def _t_of_v(v):
    y = max(v, 1e-300) / V_WIDTH
    return V_KNEE + V_WIDTH * (y + math.log(-math.expm1(-y)))


def _lam_range():
    return math.log(LAMBDA_RANGE[0]), math.log(LAMBDA_RANGE[1])


def solve(f, t0: float, slope: float, tol: float, lo: float, hi: float, max_evals: int,
          points: list | None = None, stop=None):
    """A root of the decreasing function f(t) on [lo, hi], |f| <= tol.

    ``points`` holds (t, f(t)) pairs already known (they seed the search and the
    new evaluations are appended).  ``stop(points)``, if given, may end the search
    after an evaluation (status "stop", t the last point).  Once the root is bracketed
    the next point is the inverse quadratic interpolation through the three points
    nearest the root when it falls inside the bracket, else secant / false position.
    Returns ``(t, status)``: status "ok" (|f(t)| <=
    tol), "high" (f > 0 even at hi: the root lies beyond the largest t), "low" (f < 0
    even at lo) or "budget" (evaluations spent; t is the point with the smallest |f|).
    """
    pts = points if points is not None else []

    def bracket():
        below = [p for p in pts if p[1] > 0]            # t too small (f decreasing)
        above = [p for p in pts if p[1] <= 0]
        return (max(below, default=None), min(above, default=None))

    for p in pts:
        if abs(p[1]) <= tol:
            return p[0], "ok"
    t = min(max(t0, lo), hi)
    widths = []                                         # bracket widths, to spot stalling
    for _ in range(max_evals):
        if not any(p[0] == t for p in pts):
            v = f(t)
            pts.append((t, v))
            if abs(v) <= tol:
                return t, "ok"
            if stop is not None and stop(pts):
                return t, "stop"
        below, above = bracket()
        if below is not None and above is not None:
            (ta, va), (tb, vb) = below, above
            if tb - ta < 1e-9:
                break
            widths.append(tb - ta)
            margin = 1e-3 * (tb - ta)
            if len(widths) >= 3 and widths[-1] > 0.5 * widths[-3]:
                tn = 0.5 * (ta + tb)         # the bracket did not halve in two steps: bisect
            else:
                tn = _iqi(pts)
                if tn is not None and not ta + margin <= tn <= tb - margin:
                    tn = None
                (t1, v1), (t2, v2) = pts[-2:] if len(pts) >= 2 else (below, above)
                if tn is None and t1 != t2 and v1 != v2:
                    tn = t2 - v2 * (t2 - t1) / (v2 - v1)    # secant through the last two
                if tn is None or not ta + margin <= tn <= tb - margin:
                    tn = ta + va * (tb - ta) / (va - vb)    # false position on the bracket
                    tn = min(max(tn, ta + margin), tb - margin)
        else:                                   # no bracket: every f has one sign
            # step from the point nearest the root *in t* (with f > 0 the largest t, else
            # the smallest): where f is flat and not monotone (near the PSNR ceiling) the
            # smallest |f| may lie behind it
            last = sorted(pts, key=lambda p: p[0], reverse=pts[0][1] > 0)[:2]
            s = slope
            if len(last) == 2 and last[0][0] != last[1][0]:
                est = (last[0][1] - last[1][1]) / (last[0][0] - last[1][0])
                if est < 0:
                    s = max(min(est, slope / 8), slope * 8)   # within 1/8 .. 8 of the prior
            t_ref, v_ref = last[0]
            tn = t_ref - v_ref / s
            if abs(tn - t_ref) > MAX_STEP and s == slope / 8:
                tn = hi if tn > t_ref else lo   # flat and far: go to the end at once
            else:
                tn = min(max(tn, t_ref - MAX_STEP), t_ref + MAX_STEP)
            if tn >= hi:
                if any(p[0] == hi for p in pts):
                    return hi, "high"
                tn = hi
            elif tn <= lo:
                if any(p[0] == lo for p in pts):
                    return lo, "low"
                tn = lo
        t = tn
    best = min(pts, key=lambda p: abs(p[1]))
    return best[0], "budget"


def _iqi(pts):
    """Inverse quadratic interpolation through the three points nearest the root (or None)."""
    if len(pts) < 3:
        return None
    (a, fa), (b, fb), (c, fc) = sorted(pts, key=lambda p: abs(p[1]))[:3]
    if fa == fb or fa == fc or fb == fc:
        return None
    return (a * fb * fc / ((fa - fb) * (fa - fc)) + b * fa * fc / ((fb - fa) * (fb - fc))
            + c * fa * fb / ((fc - fa) * (fc - fb)))


class _Search:
    """Runs of VBQ on one image at t = ln(lambda), with the progress messages and times."""

    def __init__(self, enc, second_pass, progress, context_pass=True):
        self.enc = enc
        self.second_pass = second_pass
        self.context_pass = context_pass
        self.progress = progress
        self.t0 = time.perf_counter()
        self.steps = 0
        self.vbq_s = 0.0                                 # seconds in VBQ runs
        self.recent = {}                                 # t -> Quantized, the last runs:
        mu = getattr(enc, "mu", None)                    # two, one on large images (memory)
        self.keep = 2 if mu is None or mu.size <= RECENT_LATENTS else 1
        self.quality_of = {}                             # t -> PSNR
        self.rate_of = {}                                # t -> estimated bpp
        self.ceiling = None                              # True once the smallest lambda ran

    def symbols(self, t):
        if t in self.recent:
            return self.recent[t]
        t0 = time.perf_counter()
        q = self.enc.symbols(math.exp(t), self.second_pass, self.context_pass)
        self.vbq_s += time.perf_counter() - t0
        self.steps += 1
        while len(self.recent) >= self.keep:
            del self.recent[next(iter(self.recent))]
        self.recent[t] = q
        return q

    def rate(self, t):
        """The estimated bpp at t (a VBQ run, no coding)."""
        if t not in self.rate_of:
            self.rate_of[t] = self.enc.rate(self.symbols(t))
        return self.rate_of[t]

    def say(self, message):
        if self.progress is not None:
            self.progress(message)

    def quality(self, t):
        if t not in self.quality_of:
            q = self.symbols(t)
            self.quality_of[t] = self.enc.quality(q)
            if t not in self.rate_of:
                self.rate_of[t] = self.enc.rate(q)
            self.say(f"lambda {math.exp(t):.4g}: {self.quality_of[t]:.3f} dB")
        return self.quality_of[t]

    def encode(self, t, note=None, psnr=None):
        q = self.symbols(t)
        out = self.enc.encode(math.exp(t), self.second_pass, q=q, context_pass=self.context_pass)
        out.note, out.psnr = note, psnr
        out.times["VBQ"] = self.vbq_s                    # every run of the search
        out.times["search"] = (time.perf_counter() - self.t0 - self.vbq_s
                               - out.times.get("entropy coding", 0))   # trial decodes, estimates
        out.times["search steps (VBQ runs)"] = self.steps
        return out

    def find_quality(self, target, above=None, stop=None):
        """Search t for PSNR in [target, target + PSNR_TOL]; returns (t, status).

        ``above``: search only t >= above (the knee: below it PSNR is flat and not
        monotone, so only the largest lambda that meets the target counts).  The search
        steps in v (module docstring), where PSNR is close to a line.
        """
        lo, hi = _lam_range()
        if above is not None:
            lo = above
        goal = target + PSNR_TOL / 2
        start = math.log(START_LAM) if math.log(START_LAM) > lo else lo + 1.0
        t_of = {}                                        # v -> t for the points evaluated

        def to_t(v):
            return t_of[v] if v in t_of else _t_of_v(v)

        def g(v):
            t = to_t(v)
            t_of[v] = t
            return self.quality(t) - goal
        pts = []
        for t, q in self.quality_of.items():
            if t >= lo:
                t_of[_v_of_t(t)] = t
                pts.append((_v_of_t(t), q - goal))
        v_lo, v_hi = _v_of_t(lo), _v_of_t(hi)
        t_of.setdefault(v_lo, lo)
        t_of.setdefault(v_hi, hi)
        v0 = _v_of_t(start)
        if pts:                                          # a step from the nearest point known
            vb, fb = min(pts, key=lambda p: abs(p[1]))
            v0 = min(max(vb - fb / V_SLOPE, v_lo), v_hi)
        v, status = solve(g, v0, V_SLOPE, PSNR_TOL / 2 * (1 + 1e-9), v_lo, v_hi,
                          14, pts, stop)
        return to_t(v), status

    def ceiling_psnr(self):
        """The most this model gives this image: the best PSNR seen, the smallest lambda of
        the range evaluated first (PSNR is not monotone down there)."""
        if self.ceiling is None:
            self.quality(_lam_range()[0])
            self.ceiling = True
        return max(self.quality_of.values())

    def knee_t(self, give_up=None):
        """t of the smallest file within QUALITY_SLACK of the ceiling.

        The largest t whose PSNR meets ceiling - QUALITY_SLACK: found to within PSNR_TOL,
        or until the next larger t evaluated (which misses) gives a file less than
        KNEE_RATE_TOL smaller (estimated sizes), whichever comes first.  A trial that
        raises the ceiling re-aims the search.  ``give_up(goal)`` may end it early.
        """
        while True:
            ceiling = self.ceiling_psnr()
            goal = ceiling - QUALITY_SLACK

            def narrow(_pts):
                if self.ceiling_psnr() > ceiling or (give_up is not None and give_up(goal)):
                    return True
                ok = self.best_meeting(goal)
                worse = [t for t, v in self.quality_of.items() if t > ok and v < goal]
                return bool(worse) and self.rate(ok) <= KNEE_RATE_TOL * self.rate(min(worse))
            if not narrow(None):
                self.find_quality(goal, above=self.best_meeting(goal), stop=narrow)
            if self.ceiling_psnr() <= ceiling or (give_up is not None and give_up(goal)):
                return self.best_meeting(goal)

    def knee(self, note):
        """The smallest file within QUALITY_SLACK of the ceiling (``note(lambda)`` explains)."""
        t = self.knee_t()
        return self.encode(t, note=note(math.exp(t)), psnr=self.quality_of[t])

    def best_meeting(self, target):
        """The largest t evaluated whose PSNR >= target (else the smallest t evaluated)."""
        ok = [t for t, v in self.quality_of.items() if v >= target]
        return max(ok) if ok else min(self.quality_of)


def encode_for_psnr(enc, target: float, second_pass: bool = True, progress=None,
                    context_pass: bool = True):
    """The smallest file with PSNR >= target (within PSNR_TOL), or the knee if out of reach."""
    s = _Search(enc, second_pass, progress, context_pass)
    t, status = s.find_quality(target)
    if status == "low" or (status == "budget" and max(s.quality_of.values()) < target):
        ceiling = s.ceiling_psnr()
        if ceiling < target:
            msg = (f"target {target:g} dB is out of reach: this model's ceiling for this image "
                   f"is {ceiling:.2f} dB")
            s.say(msg)
            return s.knee(lambda lam: msg + f"; this is the smallest file within "
                          f"{QUALITY_SLACK:g} dB of it (lambda {lam:.4g})")
    if status == "high":                      # even the largest lambda meets the target
        return s.encode(t, psnr=s.quality(t))
    t = s.best_meeting(target)
    return s.encode(t, psnr=s.quality_of[t])


def encode_for_bpp(enc, target: float, second_pass: bool = True, progress=None,
                   context_pass: bool = True):
    """The file closest to ``target`` bpp (within BPP_TOL when reachable; see the module)."""
    s = _Search(enc, second_pass, progress, context_pass)
    lo, hi = _lam_range()
    est = {}

    def estimate(t):                            # est: t = ln(lambda) -> estimated bpp
        if t not in est:
            est[t] = s.rate(t)
            s.say(f"lambda {math.exp(t):.4g}: {est[t]:.4f} bpp (estimate)")
        return est[t]

    coded = []                                  # (t, real / estimate, Encoded)

    def log_ratio(t):
        """ln(real / estimate) at t: a first guess, then the line through the coded points."""
        if not coded:                           # a fixed cost of the adaptive models, ~2500 bits
            ratio0 = RATIO0_CONTEXT if context_pass else RATIO0
            return math.log(ratio0 + OVERHEAD_BITS / (enc.num_pixels * estimate(t)))
        if len(coded) == 1:
            return math.log(coded[0][1])
        (ta, ra, _), (tb, rb, _) = coded[-2:]
        if ta == tb:
            return math.log(rb)
        return math.log(ra) + (math.log(rb) - math.log(ra)) * (t - ta) / (tb - ta)

    def f(t):
        return math.log(estimate(t)) + log_ratio(t) - math.log(target)

    def below_knee_check(pts):                  # the root lies below a point < KNEE_CHECK_LAM
        return not knee_checked and any(u < knee_t and v < 0 for u, v in pts)
    knee_t, knee_checked = math.log(KNEE_CHECK_LAM), False
    t = math.log(START_LAM)
    for _ in range(3):
        pts = [(u, f(u)) for u in est]                       # the same runs, a new goal
        t, status = solve(f, t, BPP_SLOPE, math.log(1 + BPP_TOL / 2), lo, hi, 12, pts,
                          below_knee_check)
        if status == "stop":                    # the target's lambda < t < KNEE_CHECK_LAM:
            knee_checked = True                 # is the quality still rising at t?
            knee = _knee_if_flat(s, t, target)
            if knee is not None:
                return knee
            pts = [(u, f(u)) for u in est]
            t, status = solve(f, t, BPP_SLOPE, math.log(1 + BPP_TOL / 2), lo, hi, 12, pts)
        lam = math.exp(t)
        if status == "low":                     # more bits than the smallest lambda gives
            return _too_large(s, target, est)
        if lam < KNEE_CHECK_LAM:                # where quality may have stopped rising
            knee = _knee_if_flat(s, t, target)
            if knee is not None:
                return knee
        out = s.encode(t)
        coded.append((t, out.bpp / est[t], out))
        s.say(f"lambda {lam:.4g}: {out.bpp:.4f} bpp (coded)")
        if status == "high":
            out.note = (f"target {target:g} bpp is below the smallest file this model makes "
                        f"of this image ({out.bpp:.4f} bpp): this is the smallest")
            return out
        if abs(out.bpp / target - 1) <= BPP_TOL:
            return out
    best = min((c[2] for c in coded), key=lambda e: abs(e.bpp / target - 1))
    if abs(best.bpp / target - 1) > 0.02:
        best.note = f"target {target:g} bpp not reachable: this is the closest size"
    return best


def _too_large(s, target, est):
    most = est[min(est)]
    msg = (f"target {target:g} bpp is out of reach: the largest file this model makes of "
           f"this image is about {most:.3f} bpp")
    s.say(msg)
    return s.knee(lambda lam: msg + f"; and the quality stops rising well before: this is the "
                  f"smallest file within {QUALITY_SLACK:g} dB of the best (lambda {lam:.4g})")


def _knee_if_flat(s, t, target):
    """The knee's file instead of t's when t lies where the quality has stopped rising.

    The ceiling (one trial decode at the smallest lambda) and the knee come first: a t at
    or below the knee's (a file at least as large) buys at most QUALITY_SLACK over it.  The
    knee search stops early once a point at or below t misses the knee's quality (then the
    quality is still rising at t: None, go on with t).  Nothing is coded here unless the
    knee is the answer.
    """
    def rising(goal):                           # a point at or below t misses the goal
        return any(u <= t and v < goal for u, v in s.quality_of.items())
    if rising(s.ceiling_psnr() - QUALITY_SLACK):
        return None
    k = s.knee_t(give_up=rising)
    ceiling = s.ceiling_psnr()
    if k < t or s.quality_of[k] < ceiling - QUALITY_SLACK:
        return None
    msg = f"at {target:g} bpp the quality has stopped rising (ceiling {ceiling:.2f} dB)"
    s.say(msg)
    return s.encode(k, note=msg + f": this is the smallest file within {QUALITY_SLACK:g} dB "
                    f"of it (lambda {math.exp(k):.4g})", psnr=s.quality_of[k])
