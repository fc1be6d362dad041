"""The target searches of bac_ref.ratecontrol on a stand-in encoder (fast, no model).

The stand-in has the shape of a real photo's curves (README, "Rate and quality
targets"): PSNR falls about 2 dB per unit of ln(lambda) above lambda ~ 1 and stops
rising below lambda ~ 0.03 (the ceiling); the estimated rate falls about 0.45 per unit
of ln(lambda) and keeps rising as lambda -> 0; real files are ``ratio`` times the
estimate.  It counts what each search step costs: VBQ runs, trial decodes (g_s),
codings.  tests/test_codec.py runs the same searches on the real codec.
"""
import math

import pytest

from bac_ref import ratecontrol


class _Out:
    def __init__(self, lam, bpp):
        self.lam, self.bpp, self.note, self.psnr, self.times = lam, bpp, None, None, {}


class StandIn:
    """symbols / rate / quality / encode of bac_ref.codec.Encoder on analytic curves."""

    num_pixels = 512 * 768

    def __init__(self, ceiling=36.3, slope=2.0, ratio=1.0, knee=0.15, dip=0.0):
        self.ceiling, self.slope, self.ratio, self.knee = ceiling, slope, ratio, knee
        self.dip = dip                            # PSNR lower by this at the smallest lambda
        self.calls = {"symbols": 0, "quality": 0, "encode": 0}
        self.seen = []                            # the PSNRs of the trial decodes

    def psnr_at(self, t):
        x = (t - math.log(self.knee)) / 0.7
        soft = 0.7 * (max(x, 0) + math.log1p(math.exp(-abs(x))))
        wiggle = 0.01 * math.sin(7 * t) * math.exp(min(t, 0))      # not monotone near the top
        dip = self.dip * math.exp((math.log(ratecontrol.LAMBDA_RANGE[0]) - t) / 3)
        return self.ceiling - self.slope * soft + 0.03 * soft * soft / (1 + soft) + wiggle - dip

    def rate_at(self, t):
        return 0.24 * math.exp(-0.45 * (t - math.log(3.0)) - 0.01 * t * t)

    def symbols(self, lam, second_pass=True, context_pass=True):
        self.calls["symbols"] += 1
        return math.log(lam)                      # "symbols": their t

    def rate(self, q):
        return self.rate_at(q)

    def quality(self, q):
        self.calls["quality"] += 1
        self.seen.append(self.psnr_at(q))
        return self.seen[-1]

    def encode(self, lam, second_pass=True, q=None, context_pass=True):
        self.calls["encode"] += 1
        t = math.log(lam)
        return _Out(lam, self.rate_at(t) * self.ratio)


@pytest.mark.parametrize("target", [26.0, 28.0, 30.0, 32.0, 34.0, 35.5])
@pytest.mark.parametrize("slope", [1.6, 2.0, 2.5])
def test_psnr_target_met_in_few_trial_decodes(target, slope):
    enc = StandIn(slope=slope)
    out = ratecontrol.encode_for_psnr(enc, target)
    got = enc.psnr_at(math.log(out.lam))
    assert target <= got <= target + ratecontrol.PSNR_TOL and out.psnr == got
    assert out.note is None
    assert enc.calls["encode"] == 1
    assert enc.calls["quality"] <= 5, enc.calls         # 2-4 typically; the search once took 4-8


@pytest.mark.parametrize("target", [0.1, 0.3, 0.6, 1.0])
@pytest.mark.parametrize("ratio", [0.9, 1.0, 1.06])
def test_bpp_target_met_without_trial_decodes(target, ratio):
    enc = StandIn(ratio=ratio)
    out = ratecontrol.encode_for_bpp(enc, target)
    assert abs(out.bpp / target - 1) <= 0.02 and out.note is None
    assert enc.calls["quality"] == 0 and enc.calls["encode"] <= 2
    assert enc.calls["symbols"] <= 7, enc.calls


def _knee_t(enc):
    """The largest t on a fine grid whose PSNR is within the slack of the ceiling."""
    lo = math.log(ratecontrol.LAMBDA_RANGE[0])
    ceiling = max(enc.psnr_at(lo + 0.01 * i) for i in range(1000))
    ts = [lo + 0.001 * i for i in range(12000)]
    return max(t for t in ts if enc.psnr_at(t) >= ceiling - ratecontrol.QUALITY_SLACK), ceiling


def test_bpp_target_past_the_knee_gives_the_knee_coded_once():
    """A reachable size whose lambda lies where quality has stopped rising: the knee's file
    (smaller, within the slack of the ceiling), coded once, a note said during the search."""
    enc = StandIn()
    heard = []
    target = enc.rate_at(math.log(0.004))             # lambda 0.004: far past the knee
    out = ratecontrol.encode_for_bpp(enc, target, progress=heard.append)
    assert out.note and "stopped rising" in out.note
    assert any("stopped rising" in h for h in heard)
    knee, ceiling = _knee_t(enc)
    got = math.log(out.lam)
    assert out.psnr == enc.psnr_at(got) >= min(ceiling, enc.psnr_at(enc.knee)) - 0.15
    assert out.psnr >= enc.psnr_at(math.log(ratecontrol.LAMBDA_RANGE[0])) \
        - ratecontrol.QUALITY_SLACK
    # no file much larger than the knee's: within KNEE_RATE_TOL (estimated sizes) plus a step
    assert enc.rate_at(got) <= 1.05 * enc.rate_at(knee) and out.bpp < 0.7 * target
    assert enc.calls["encode"] == 1                   # nothing coded and thrown away
    assert enc.calls["quality"] <= 4, enc.calls       # the ceiling and 1-3 knee steps (was 11)
    assert enc.calls["symbols"] <= 4, enc.calls       # the size search stops once the target's
    #                                                   lambda is known to lie past KNEE_CHECK_LAM


def test_bpp_target_before_the_knee_is_not_the_knee():
    """lambda below KNEE_CHECK_LAM but quality still rising there: the target, no note."""
    enc = StandIn(knee=0.004)                          # a detailed photo: the knee far left
    target = enc.rate_at(math.log(0.03))
    out = ratecontrol.encode_for_bpp(enc, target)
    assert out.note is None and abs(out.bpp / target - 1) <= 0.02


def test_psnr_target_out_of_reach_says_so_before_coding():
    enc = StandIn()
    heard = []
    enc_encode = enc.encode

    def encode(*a, **k):
        heard.append("coding")
        return enc_encode(*a, **k)
    enc.encode = encode
    out = ratecontrol.encode_for_psnr(enc, enc.ceiling + 2, progress=heard.append)
    said = [i for i, h in enumerate(heard) if "out of reach" in h]
    assert said and said[0] < heard.index("coding") and "out of reach" in out.note
    knee, _ = _knee_t(enc)
    assert enc.rate_at(math.log(out.lam)) <= 1.05 * enc.rate_at(knee)
    assert out.psnr >= enc.psnr_at(math.log(ratecontrol.LAMBDA_RANGE[0])) \
        - ratecontrol.QUALITY_SLACK
    assert enc.calls["quality"] <= 5, enc.calls


def test_solve_stop_callback_and_inverse_quadratic_steps():
    pts = []
    t, status = ratecontrol.solve(lambda t: 1.0 - t * t * t, 0.0, -1.0, 1e-12, -5, 5, 40, pts)
    assert status == "ok" and abs(t - 1.0) < 1e-9 and len(pts) <= 12
    seen = []
    t, status = ratecontrol.solve(lambda t: 1.0 - t, 5.0, -1.0, 1e-9, -5, 5, 40, None,
                                  stop=lambda p: seen.append(len(p)) or len(p) >= 1)
    assert status == "stop" and t == 5.0 and seen == [1]


def test_v_transform_round_trips():
    for t in (-9.0, -4.0, -2.0, 0.0, 1.1, 5.0, 11.0):
        v = ratecontrol._v_of_t(t)
        assert v > 0 and abs(ratecontrol._t_of_v(v) - t) < 1e-9


@pytest.mark.parametrize("kind", ["bpp", "psnr"])
def test_knee_is_measured_from_the_best_quality_seen(kind):
    """PSNR at the smallest lambda is below the best (not monotone there, as on a smooth
    photo: 39.24 vs 39.30 dB): the knee is within the slack of the best seen, and the note
    names that ceiling."""
    enc = StandIn(dip=0.15)
    if kind == "bpp":
        out = ratecontrol.encode_for_bpp(enc, enc.rate_at(math.log(0.004)))
    else:
        out = ratecontrol.encode_for_psnr(enc, enc.ceiling + 1)
    low = enc.psnr_at(math.log(ratecontrol.LAMBDA_RANGE[0]))
    best = max(enc.seen)
    assert best > low + 0.02                                      # the search saw the dip
    assert best - ratecontrol.QUALITY_SLACK <= out.psnr <= best
    if kind == "bpp":
        assert f"ceiling {best:.2f} dB" in out.note
    assert enc.calls["encode"] == 1 and enc.calls["quality"] <= 6, enc.calls
