r"""Bayesian skip-gram word embeddings (optional extra ``train``: PyTorch).

The model of the VBQ paper's second experiment (Yang, Bamler & Mandt 2020,
§5.2; Barkan 2017; Bamler & Mandt 2017): skip-gram with negative sampling
(Mikolov et al. 2013) whose word vectors U and context vectors V are random,
with a factorised Gaussian prior and a mean-field Gaussian posterior

    p(U_wi) = N(0, s_U^2),   q(U_wi) = N(mu_wi, sigma_wi^2)      (same for V, with s_V)

The objective is the ELBO of the corpus, estimated per mini-batch of B
(centre w, context c) pairs with k negatives n_1..n_k each (:mod:`bac_ref.embeddings.corpus`)
and one reparameterised sample u = mu + sigma * eps per occurrence:

    ELBO / P = mean_batch[ log sigmoid(u_w . v_c) + sum_j log sigmoid(-u_w . v_nj) ]
               - ( KL(q(U) || p(U)) + KL(q(V) || p(V)) ) / P

with P the number of pairs in one pass over the corpus, and per entry
KL(N(m, t^2) || N(0, s^2)) = log(s / t) + (t^2 + m^2) / (2 s^2) - 1/2.
The prior scales s_U, s_V are learned too (empirical Bayes; their optimum
is s^2 = mean(m^2 + t^2)).  A word seen rarely keeps a posterior close to
the prior (sigma near s): that uncertainty is what VBQ exploits when it
compresses mu, spending few or no bits on those entries.

The shipped file holds the word vectors' posterior (``mu``, ``sigma``, (V, D)
float32), ``words`` and ``counts``, and the learned ``prior_scale`` s_U.
Run ``python -m bac_ref.embeddings.skipgram --help``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "bac_ref.embeddings.skipgram needs PyTorch: pip install 'bac_ref[train]' "
        "(CPU wheel: pip install torch==2.13.0)") from exc

from . import analogy, corpus  # noqa: E402
from ..entry import require_file, run  # noqa: E402
from ..weights import export_npz  # noqa: E402


class BayesianSkipGram(torch.nn.Module):
    """Posterior means and log-stds of word (in) and context (out) vectors, and log prior scales."""

    def __init__(self, vocab_size: int, dim: int, seed: int, init_log_sigma: float = -3.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mu_in = torch.nn.Parameter((torch.rand(vocab_size, dim, generator=g) - 0.5) / dim)
        self.mu_out = torch.nn.Parameter(torch.zeros(vocab_size, dim))
        self.ls_in = torch.nn.Parameter(torch.full((vocab_size, dim), init_log_sigma))
        self.ls_out = torch.nn.Parameter(torch.full((vocab_size, dim), init_log_sigma))
        self.log_s_in = torch.nn.Parameter(torch.zeros(()))
        self.log_s_out = torch.nn.Parameter(torch.zeros(()))

    @staticmethod
    def _kl(mu, ls, log_s):
        """sum KL(N(mu, e^{2 ls}) || N(0, e^{2 log_s})) over all entries."""
        return torch.sum(log_s - ls + (torch.exp(2 * ls) + mu * mu) / (2 * torch.exp(2 * log_s)) - 0.5)

    def kl(self):
        return self._kl(self.mu_in, self.ls_in, self.log_s_in) + \
            self._kl(self.mu_out, self.ls_out, self.log_s_out)

    def sample(self, which: str, idx, gen):
        mu, ls = (self.mu_in, self.ls_in) if which == "in" else (self.mu_out, self.ls_out)
        m, s = mu[idx], torch.exp(ls[idx])
        return m + s * torch.randn(m.shape, generator=gen)

    def log_likelihood(self, centre, context, negatives, gen):
        """mean over the batch of log sigma(u.v) + sum_j log sigma(-u.v_j)."""
        u = self.sample("in", centre, gen)                          # (B, D)
        v = self.sample("out", context, gen)                        # (B, D)
        vn = self.sample("out", negatives, gen)                     # (B, k, D)
        pos = F.logsigmoid(torch.sum(u * v, dim=1))
        neg = F.logsigmoid(-torch.einsum("bd,bkd->bk", u, vn)).sum(dim=1)
        return torch.mean(pos + neg)


def export(path, model, vocab, meta) -> str:
    arrays = {
        "words": np.array(vocab.words),
        "counts": vocab.counts.astype(np.int64),
        "mu": model.mu_in.detach().numpy().astype(np.float32),
        "sigma": torch.exp(model.ls_in).detach().numpy().astype(np.float32),
        "prior_scale": np.array(torch.exp(model.log_s_in).item(), dtype=np.float64),
    }
    return export_npz(path, arrays, meta)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bac_ref.embeddings.skipgram", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="../shared/data/text/corpus.txt.gz")
    p.add_argument("--questions", default="../shared/data/text/questions-words.txt",
                   help="analogy questions, evaluated after every epoch ('' to skip)")
    p.add_argument("--out", default="pretrained_npz/skipgram-d100.npz")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--negatives", type=int, default=5)
    p.add_argument("--subsample", type=float, default=1e-4, help="word2vec's t (0: off)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--lr", type=float, default=1e-2, help="Adam; cosine-decayed to lr/20")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    require_file(args.corpus, "corpus (--corpus)")
    if args.questions:
        require_file(args.questions, "analogy questions (--questions; '' to skip)")
    torch.set_num_threads(args.threads)

    t0 = time.time()
    docs = list(corpus.read_documents(args.corpus))
    vocab = corpus.build_vocabulary(docs, args.min_count)
    ids, doc_of = corpus.encode_documents(docs, vocab)
    del docs
    print(f"{ids.size} tokens, vocabulary {len(vocab)} (min count {args.min_count}) "
          f"[{time.time() - t0:.1f} s]", file=sys.stderr, flush=True)
    questions = analogy.load_questions(args.questions, vocab.words) if args.questions else None
    if questions is not None:
        print(f"{questions.ids.shape[0]} of {questions.total} analogy questions covered",
              file=sys.stderr, flush=True)
        if questions.ids.shape[0] == 0:
            questions = None

    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    sampler = corpus.NegativeSampler(vocab.counts)
    model = BayesianSkipGram(len(vocab), args.dim, args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    # P (pairs per epoch) is counted afresh each epoch; the lr schedule's length comes from epoch 1
    history = []
    step, total_steps = 0, None
    for epoch in range(args.epochs):
        kept_ids, kept_docs = corpus.subsample(ids, doc_of, vocab.counts, args.subsample, rng)
        centre, context = corpus.skipgram_pairs(kept_ids, kept_docs, args.window, rng)
        n_pairs = centre.size
        batches = math.ceil(n_pairs / args.batch)
        if total_steps is None:
            total_steps = batches * args.epochs
        te, ll_sum = time.time(), 0.0
        for b in range(batches):
            frac = min(step / total_steps, 1.0)
            for g in opt.param_groups:
                g["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            sl = slice(b * args.batch, (b + 1) * args.batch)
            c = torch.from_numpy(centre[sl])
            x = torch.from_numpy(context[sl])
            neg = torch.from_numpy(sampler.sample((c.shape[0], args.negatives), rng))
            ll = model.log_likelihood(c, x, neg, gen)
            loss = -ll + model.kl() / n_pairs
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            ll_sum += ll.item()
            if (b + 1) % 200 == 0 or b + 1 == batches:
                print(f"epoch {epoch + 1}/{args.epochs} batch {b + 1}/{batches} "
                      f"log-lik/pair {ll_sum / (b + 1):.4f} KL/pair {model.kl().item() / n_pairs:.4f} "
                      f"[{time.time() - te:.0f} s]", file=sys.stderr, flush=True)
        with torch.no_grad():
            rec = {"epoch": epoch + 1, "pairs": int(n_pairs), "loglik_per_pair": ll_sum / batches,
                   "kl_per_pair": model.kl().item() / n_pairs,
                   "prior_scale_in": torch.exp(model.log_s_in).item(),
                   "sigma_in_median": torch.exp(model.ls_in).median().item()}
        if questions is not None:
            rec.update(analogy.evaluate(model.mu_in.detach().numpy(), questions).as_dict())
        history.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
        meta = {"model": "bayesian-skipgram", "corpus": os.path.basename(args.corpus),
                "settings": {k: v for k, v in vars(args).items() if k not in ("out", "threads")},
                "tokens": int(ids.size), "vocabulary": len(vocab), "epochs_done": epoch + 1,
                "history": history}
        export(args.out, model, vocab, meta)
        print(f"wrote {args.out} after epoch {epoch + 1}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m bac_ref.embeddings.skipgram"))
