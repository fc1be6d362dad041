r"""Text corpus -> vocabulary -> skip-gram pairs (NumPy; the data side of :mod:`bac_ref.embeddings.skipgram`).

The word-embedding experiment of the VBQ paper (Yang, Bamler & Mandt 2020, §5.2)
compresses Bayesian skip-gram embeddings.  This module turns a text file into
the training pairs of skip-gram with negative sampling (Mikolov et al. 2013):

    corpus.txt(.gz), one document per line
      --tokenize-->  lower-case words [a-z]+ (apostrophes and digits split words)
      --Vocabulary-->  the words with count >= min_count, most frequent first
                       (id 0 = the most frequent word; ties broken alphabetically)
      --subsample-->   keep each occurrence of word w with probability
                       min(1, sqrt(t / f_w) + t / f_w)   (f_w = count_w / total; word2vec's rule)
      --pairs-->       (centre, context) for every context within a window b ~ U{1..window}
                       drawn per centre, never across a document boundary
      negatives:       k words per pair drawn from the unigram distribution ^ 0.75

Everything is seeded by a numpy Generator, so a run is reproducible.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["tokenize", "read_documents", "Vocabulary", "build_vocabulary", "encode_documents",
           "subsample", "skipgram_pairs", "NegativeSampler"]

_WORD = re.compile(r"[a-z]+")


def tokenize(line: str) -> list:
    """Lower-case the line and return its maximal runs of the letters a-z."""
    return _WORD.findall(line.lower())


def read_documents(path: str):
    """Yield the token list of each line of a text file (gzip when the name ends in .gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            tokens = tokenize(line)
            if tokens:
                yield tokens


@dataclass(frozen=True)
class Vocabulary:
    """words[i] is word id i (most frequent first); counts[i] its corpus count."""

    words: tuple
    counts: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        """The id of ``word`` (lower-cased), or -1 when it is not in the vocabulary."""
        return self._index.get(word.lower(), -1)


def build_vocabulary(documents, min_count: int = 5, max_size: int | None = None) -> Vocabulary:
    """Words with count >= min_count, most frequent first (ties: alphabetical), at most max_size."""
    counts: dict = {}
    for doc in documents:
        for w in doc:
            counts[w] = counts.get(w, 0) + 1
    items = sorted(((c, w) for w, c in counts.items() if c >= min_count), key=lambda cw: (-cw[0], cw[1]))
    if max_size is not None:
        items = items[:max_size]
    if not items:
        raise ValueError(f"no word occurs at least {min_count} times")
    return Vocabulary(tuple(w for _, w in items), np.array([c for c, _ in items], dtype=np.int64))


def encode_documents(documents, vocab: Vocabulary):
    """(ids, doc) int arrays: in-vocabulary tokens in corpus order and their document number."""
    ids, docs = [], []
    for d, doc in enumerate(documents):
        row = [i for i in (vocab.id(w) for w in doc) if i >= 0]
        ids.extend(row)
        docs.extend([d] * len(row))
    return np.array(ids, dtype=np.int64), np.array(docs, dtype=np.int64)


def subsample(ids, docs, counts, t: float, rng: np.random.Generator):
    """Drop frequent words: keep word w with probability min(1, sqrt(t/f_w) + t/f_w)."""
    if t <= 0:
        return ids, docs
    f = counts / counts.sum()
    keep_p = np.minimum(1.0, np.sqrt(t / f) + t / f)
    keep = rng.random(ids.size) < keep_p[ids]
    return ids[keep], docs[keep]


def skipgram_pairs(ids, docs, window: int, rng: np.random.Generator):
    """All (centre, context) pairs with a per-centre window b ~ U{1..window}, shuffled.

    A pair (i, i + o) is kept for centre i when o <= b_i and for centre i + o
    when o <= b_{i+o}; both tokens must belong to the same document.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    b = rng.integers(1, window + 1, size=ids.size)
    centres, contexts = [], []
    for o in range(1, window + 1):
        same = docs[:-o] == docs[o:]
        fwd = same & (o <= b[:-o])                 # centre i, context i + o
        bwd = same & (o <= b[o:])                  # centre i + o, context i
        centres += [ids[:-o][fwd], ids[o:][bwd]]
        contexts += [ids[o:][fwd], ids[:-o][bwd]]
    c, x = np.concatenate(centres), np.concatenate(contexts)
    perm = rng.permutation(c.size)
    return c[perm], x[perm]


class NegativeSampler:
    """Draws word ids with probability proportional to count^power (word2vec: power 0.75)."""

    def __init__(self, counts, power: float = 0.75):
        w = np.asarray(counts, dtype=np.float64) ** power
        self.cum = np.cumsum(w / w.sum())
        self.cum[-1] = 1.0

    def sample(self, shape, rng: np.random.Generator) -> np.ndarray:
        return np.searchsorted(self.cum, rng.random(shape), side="right").astype(np.int64)
