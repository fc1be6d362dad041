"""Word embeddings: corpus, analogy evaluation, the .bacw container and the benchmark (issue 8)."""
from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bac_ref.embeddings import analogy, corpus, bacw as embedding_codec, benchmark as embeddings
from bac_ref import vbq
from bac_ref.errors import BitstreamError
from bac_ref.priors import gaussian

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "pretrained_npz", embeddings.DEFAULT_MODEL)
QUESTIONS = os.path.join(REPO, "..", "shared", "data", "text", "questions-words.txt")


# ---------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------
def test_tokenize_lowercases_and_splits():
    assert corpus.tokenize("The U.S. isn't 42x, Moby-Dick!") == ["the", "u", "s", "isn", "t", "x", "moby", "dick"]


def test_vocabulary_order_and_min_count():
    docs = [["b", "a", "b", "c"], ["a", "b", "d"]]
    v = corpus.build_vocabulary(docs, min_count=2)
    assert v.words == ("b", "a") and list(v.counts) == [3, 2]
    assert v.id("A") == 1 and v.id("c") == -1
    with pytest.raises(ValueError):
        corpus.build_vocabulary(docs, min_count=9)


def test_skipgram_pairs_stay_in_window_and_document():
    rng = np.random.default_rng(0)
    ids = np.arange(40)                       # token i has id i: a pair reveals its positions
    docs = np.repeat([0, 1, 2], [10, 25, 5])
    c, x = corpus.skipgram_pairs(ids, docs, window=3, rng=rng)
    assert c.size > 0
    assert np.all(np.abs(c - x) <= 3) and np.all(c != x)
    assert np.all(docs[c] == docs[x])
    full = corpus.skipgram_pairs(ids, np.zeros(40, int), window=1, rng=rng)
    assert full[0].size == 2 * 39             # window 1: every neighbour pair, both directions


def test_negative_sampler_follows_counts():
    s = corpus.NegativeSampler(np.array([1000, 10, 0]), power=1.0)
    draws = s.sample(20000, np.random.default_rng(1))
    assert draws.max() <= 1 and 0.985 < np.mean(draws == 0) < 0.995


# ---------------------------------------------------------------------------
# analogy
# ---------------------------------------------------------------------------
def _brute_rank(v, q):
    e = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
    e[np.linalg.norm(v, axis=1) == 0] = 0
    a, b, c, d = q
    score = e @ (e[b] - e[a] + e[c])
    others = [x for x in range(len(v)) if x not in (a, b, c, d)]
    return 1 + sum(score[x] >= score[d] for x in others)


def test_ranks_match_brute_force():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((60, 5)).astype(np.float32)
    v[7] = 0                                        # an all-zero row (VBQ's zero-bit words)
    qs = np.array([rng.choice(60, 4, replace=False) for _ in range(40)])
    got = analogy.ranks(v, qs, block=7)
    want = [_brute_rank(v.astype(np.float64), q) for q in qs]
    assert np.array_equal(got, want)


def test_ties_count_against_the_answer():
    # all-zero or identical rows tie everywhere: the answer must rank last, not first
    qs = np.array([[0, 1, 2, 3]])
    for v in (np.zeros((50, 4), np.float32), np.ones((50, 4), np.float32)):
        assert analogy.ranks(v, qs).tolist() == [47]


def test_perfect_analogies_score_one(tmp_path):
    # king - man + woman = queen in a constructed space
    words = ["man", "woman", "king", "queen", "apple"]
    v = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1], [-1, -1, 0.2]], dtype=np.float32)
    path = tmp_path / "q.txt"
    path.write_text(": family\nMan Woman King Queen\nman woman apple pear\n")
    qs = analogy.load_questions(str(path), words)
    assert qs.total == 2 and qs.ids.tolist() == [[0, 1, 2, 3]] and qs.sections == ("family",)
    s = analogy.evaluate(v, qs)
    assert (s.top1, s.hits10, s.mrr, s.n) == (1.0, 1.0, 1.0, 1)


# ---------------------------------------------------------------------------
# the .bacw container
# ---------------------------------------------------------------------------
def _matrix(v=50, d=6, seed=0):
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(-4, 0.5, (v, d)))
    mu = rng.standard_normal((v, d)) * 0.5
    return mu, sigma


@settings(max_examples=30, deadline=None)
@given(v=st.integers(1, 40), d=st.integers(1, 8), lam=st.floats(0, 5), depth=st.integers(1, 12),
       seed=st.integers(0, 2 ** 16))
def test_round_trip_is_exact(v, d, lam, depth, seed):
    mu, sigma = _matrix(v, d, seed)
    if not np.any(mu):
        return
    data, zhat = embedding_codec.compress_embeddings(mu, sigma, lam, max_depth=depth, return_zhat=True)
    back, dep, idx = embedding_codec.decompress_embeddings(data, return_symbols=True)
    assert back.shape == (v, d) and np.array_equal(back.view(np.int64), zhat.view(np.int64))
    q, s = embedding_codec.quantize_embeddings(mu, sigma, lam, max_depth=depth)
    assert np.array_equal(dep, q.depth) and np.array_equal(idx, q.index)
    assert s == embedding_codec.rms_scale(mu)


def test_zhat_is_vbq_under_the_rms_gaussian():
    mu, sigma = _matrix()
    s = math.sqrt(math.fsum((mu.astype(np.float64) ** 2).ravel()) / mu.size)   # SPEC §13's rounding
    want = vbq.quantize(mu, sigma, 0.05, gaussian(0.0, s), max_depth=10).zhat
    assert np.array_equal(embedding_codec.decompress_embeddings(
        embedding_codec.compress_embeddings(mu, sigma, 0.05)), want)


def test_header_fields_and_size():
    mu, sigma = _matrix(30, 4)
    data = embedding_codec.compress_embeddings(mu, sigma, 0.25, scale=0.5, max_depth=9)
    h, payload = embedding_codec.parse_header(data)
    assert (h.rows, h.dims, h.scale, h.lam, h.max_depth) == (30, 4, 0.5, 0.25, 9)
    assert data[:4] == b"\x89BAW" and len(data) == 36 + len(payload) and len(payload) % 4 == 0
    assert struct.unpack(">I", data[32:36])[0] == zlib.crc32(payload, zlib.crc32(data[:32]))


def test_higher_lambda_never_costs_more_here():
    mu, sigma = _matrix(200, 10, 5)
    sizes = [len(embedding_codec.compress_embeddings(mu, sigma, lam)) for lam in (0.001, 0.1, 10)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_every_bit_flip_and_truncation_is_refused():
    mu, sigma = _matrix(12, 3)
    data = embedding_codec.compress_embeddings(mu, sigma, 0.01)
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            embedding_codec.decompress_embeddings(bytes(bad))
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            embedding_codec.decompress_embeddings(data[:n])


def test_bad_inputs_are_clear_errors():
    mu, sigma = _matrix(5, 2)
    for bad in (dict(mu=mu[0], sigma=sigma[0]), dict(mu=mu, sigma=sigma[:, :1]),
                dict(mu=np.where(mu > 0, np.nan, mu), sigma=sigma), dict(mu=0 * mu, sigma=sigma)):
        with pytest.raises(ValueError):
            embedding_codec.compress_embeddings(bad["mu"], bad["sigma"], 0.1)
    for lam in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            embedding_codec.compress_embeddings(mu, sigma, lam)
    with pytest.raises(ValueError):
        embedding_codec.compress_embeddings(mu, sigma, 0.1, scale=0.0)
    with pytest.raises(TypeError):
        embedding_codec.decompress_embeddings("not bytes")


def test_declared_huge_matrix_is_refused_before_allocation():
    head = struct.pack(">4sBBBBIIdd", b"\x89BAW", 1, 1, 10, 0, 1 << 24, 1 << 16, 1.0, 0.0)
    data = head + struct.pack(">I", zlib.crc32(head))
    with pytest.raises(BitstreamError, match="exceeds"):
        embedding_codec.decompress_embeddings(data)


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
def test_bpd_needed_interpolates_in_log_rate():
    pts = [{"method": "m", "bpd": 1.0, "hits10": 0.2}, {"method": "m", "bpd": 4.0, "hits10": 0.4},
           {"method": "m", "bpd": 8.0, "hits10": 0.5}]
    assert embeddings.bpd_needed(pts, "m", 0.3) == pytest.approx(2.0)
    assert embeddings.bpd_needed(pts, "m", 0.1) == 1.0
    assert embeddings.bpd_needed(pts, "m", 0.6) is None


def test_static_range_bytes_counts_the_table():
    sym = np.random.default_rng(0).integers(0, 4, (100, 10))
    n = embeddings.static_range_bytes(sym, 4, side_bytes=16)
    ideal = embeddings.empirical_entropy_bits(sym) / 8
    assert 4 + 16 + 16 + ideal <= n <= 4 + 16 + 16 + ideal * 1.01 + 12


def _synthetic_space(seed=0):
    """A small space with planted analogies: word vectors = concept + attribute."""
    rng = np.random.default_rng(seed)
    concepts, attrs = rng.standard_normal((30, 16)), rng.standard_normal((3, 16))
    words, vecs = [], []
    for i in range(30):
        for a in range(3):
            words.append(f"w{i}x{a}")
            vecs.append(concepts[i] + attrs[a])
    mu = np.array(vecs) + 0.05 * rng.standard_normal((90, 16))
    sigma = np.full_like(mu, 0.3)
    sigma[45:] = 2.0                                         # the rarer half is uncertain
    qs = [[f"w{i}x0", f"w{i}x1", f"w{j}x0", f"w{j}x1"] for i in range(10) for j in range(10, 20)]
    return words, mu, sigma, qs


def test_benchmark_end_to_end(tmp_path):
    words, mu, sigma, qs = _synthetic_space()
    path = tmp_path / "q.txt"
    path.write_text(": planted\n" + "\n".join(" ".join(q) for q in qs) + "\n")
    questions = analogy.load_questions(str(path), words)
    res = embeddings.run(mu, sigma, questions, lambdas=(1e-3, 0.1, 3.0), uniform_levels=(2, 16),
                         kmeans_levels=(2, 8), progress=lambda m: None)
    methods = {p["method"] for p in res["points"]}
    assert {"uncompressed", "VBQ", "VBQ, blind", "uniform + range", "uniform + lzma",
            "uniform, entropy", "k-means + range"} <= methods
    assert res["uncompressed"]["hits10"] == 1.0
    vbq_pts = sorted((p["lambda"], p["bpd"]) for p in res["points"] if p["method"] == "VBQ")
    assert vbq_pts[0][1] > vbq_pts[-1][1]                    # more lambda, fewer bits
    assert len(res["summary"]) == len(embeddings.TARGET_FRACTIONS)
    md = embeddings.markdown(res)
    assert "| VBQ |" in md and "Hits@10" in md


def test_load_embeddings_rejects_bad_files(tmp_path):
    from bac_ref.errors import ModelFileError
    bad = tmp_path / "bad.npz"
    np.savez(bad, words=np.array(["a"]), mu=np.zeros((1, 2), np.float32))
    with pytest.raises(ModelFileError, match="missing"):
        embeddings.load_embeddings(str(bad))
    np.savez(bad, words=np.array(["a"]), mu=np.zeros((1, 2), np.float32), sigma=np.zeros((1, 2), np.float32))
    with pytest.raises(ModelFileError, match="sigma"):
        embeddings.load_embeddings(str(bad))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ModelFileError):
        embeddings.load_embeddings(str(tmp_path / "junk.npz"))


@pytest.mark.skipif(not os.path.exists(SHIPPED), reason="no shipped embedding model")
def test_shipped_embeddings_load_and_compress():
    words, mu, sigma, meta = embeddings.load_embeddings(SHIPPED)
    assert len(words) >= 20000 and mu.shape == (len(words), 100) and mu.dtype == np.float32
    assert meta.get("model") == "bayesian-skipgram"
    # rows follow frequency: frequent words are more certain than rare ones
    assert np.median(sigma[:1000]) < np.median(sigma[-1000:])
    sub_mu, sub_sigma = mu[:300].astype(np.float64), sigma[:300].astype(np.float64)
    data, zhat = embedding_codec.compress_embeddings(sub_mu, sub_sigma, 0.01, return_zhat=True)
    assert np.array_equal(embedding_codec.decompress_embeddings(data), zhat)


@pytest.mark.skipif(not (os.path.exists(SHIPPED) and os.path.exists(QUESTIONS)),
                    reason="needs the shipped embeddings and ../shared/data/text")
def test_shipped_embeddings_reproduce_card_scores():
    words, mu, _sigma, meta = embeddings.load_embeddings(SHIPPED)
    qs = analogy.load_questions(QUESTIONS, words)
    got = analogy.evaluate(mu, qs)
    want = meta["history"][-1]
    assert got.n == want["questions"]
    assert abs(got.hits10 - want["hits10"]) < 1e-9 and abs(got.top1 - want["top1"]) < 1e-9


def test_skipgram_training_runs_and_exports(tmp_path):
    pytest.importorskip("torch")
    from bac_ref.embeddings import skipgram
    rng = np.random.default_rng(0)
    vocab = [a + b for a in "abcde" for b in "xyzuvw"]
    text = "\n".join(" ".join(rng.choice(vocab, 40)) for _ in range(20))
    (tmp_path / "c.txt").write_text(text + "\n")
    (tmp_path / "q.txt").write_text(": s\nax ay az au\nbx by bz qqq\n")
    out = tmp_path / "emb.npz"
    args = ["--corpus", str(tmp_path / "c.txt"), "--questions", str(tmp_path / "q.txt"),
            "--out", str(out), "--dim", "8", "--epochs", "2", "--batch", "256", "--min-count", "3"]
    assert skipgram.main(args) == 0
    words, mu, sigma, meta = embeddings.load_embeddings(str(out))
    assert len(words) == 30 and mu.shape == (30, 8) and sigma.shape == (30, 8)
    assert meta["epochs_done"] == 2 and meta["history"][-1]["questions"] == 1
    assert np.isfinite(meta["history"][-1]["loglik_per_pair"])
    assert json_manifest_lists(tmp_path, "emb.npz")
    # same seed, same result
    out2 = tmp_path / "emb2.npz"
    assert skipgram.main(args[:5] + [str(out2)] + args[6:]) == 0
    assert np.array_equal(embeddings.load_embeddings(str(out2))[1], mu)


def json_manifest_lists(folder, name) -> bool:
    import json
    with open(folder / "MANIFEST.json") as f:
        return name in json.dumps(json.load(f))


def test_cli_embeddings_reports_missing_inputs(tmp_path, capsys):
    from bac_ref import cli
    assert cli.main(["embeddings", "--out", str(tmp_path), "--questions", str(tmp_path / "none.txt")]) == 2
    assert "not found" in capsys.readouterr().err
    q = tmp_path / "q.txt"
    q.write_text(": s\na b c d\n")
    assert cli.main(["embeddings", "--out", str(tmp_path), "--questions", str(q),
                     "--model", str(tmp_path / "missing.npz")]) == 2
