r"""Word-analogy evaluation with 3CosAdd (Mikolov et al. 2013), NumPy only.

A question "a b c d" (e.g. ``Athens Greece Baghdad Iraq``) asks for the word x
that maximises, over the whole vocabulary except a, b and c,

    3CosAdd(x) = cos(x, b) - cos(x, a) + cos(x, c)  =  e_x . (e_b - e_a + e_c)

with e_w = v_w / ||v_w|| the unit vectors (an all-zero vector, which VBQ
produces for words it gives no bits, stays zero: every cosine with it is 0).
The rank of d is 1 + #{x not in {a, b, c, d} : score(x) >= score(d)}: ties
count against the answer, so a degenerate reconstruction (all-zero rows, or
many identical rows, as coarse quantizers produce) cannot score by tying; and

    top-1 = mean[rank = 1],  Hits@10 = mean[rank <= 10],  MRR = mean[1 / rank]

over the questions whose four words are all in the vocabulary (the paper
reports Hits@10, Yang, Bamler & Mandt 2020, Fig. 5).  Scores are float32
matrix products, computed in blocks of questions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Questions", "load_questions", "AnalogyScores", "evaluate"]


@dataclass(frozen=True)
class Questions:
    """ids: (Q, 4) int64 word ids (a, b, c, d); section[q]: index into ``sections``."""

    ids: np.ndarray
    section: np.ndarray
    sections: tuple
    total: int              # questions in the file, covered or not


def load_questions(path: str, words) -> Questions:
    """Read questions-words.txt; keep the questions whose four words are all in ``words``.

    ``words`` is the vocabulary in id order (word id i is ``words[i]``); questions are
    matched case-insensitively, as the corpus tokenizer lower-cases.
    """
    index = {w: i for i, w in enumerate(words)}
    ids, section, sections, total = [], [], [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == ":":
                sections.append(" ".join(parts[1:]))
                continue
            if len(parts) != 4:
                raise ValueError(f"{path}: a question needs 4 words, got {line.strip()!r}")
            total += 1
            q = [index.get(w.lower(), -1) for w in parts]
            if min(q) >= 0:
                ids.append(q)
                section.append(max(len(sections) - 1, 0))
    return Questions(np.array(ids, dtype=np.int64).reshape(-1, 4),
                     np.array(section, dtype=np.int64), tuple(sections), total)


@dataclass(frozen=True)
class AnalogyScores:
    top1: float
    hits10: float
    mrr: float
    n: int

    def as_dict(self) -> dict:
        return {"top1": self.top1, "hits10": self.hits10, "mrr": self.mrr, "questions": self.n}


def ranks(vectors, ids, block: int = 512) -> np.ndarray:
    """The 3CosAdd rank of the answer d for every question row (a, b, c, d) of ``ids``."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError("vectors must be a (V, D) array")
    if not np.all(np.isfinite(v)):
        raise ValueError("vectors contain NaN or infinite values")
    ids = np.asarray(ids, dtype=np.int64).reshape(-1, 4)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    e = v / np.where(norm > 0, norm, 1).astype(np.float32)
    out = np.empty(ids.shape[0], dtype=np.int64)
    for s in range(0, ids.shape[0], block):
        q = ids[s:s + block]
        target = e[q[:, 1]] - e[q[:, 0]] + e[q[:, 2]]
        scores = target @ e.T                                        # (block, V)
        rows = np.arange(q.shape[0])
        answer = scores[rows, q[:, 3]].copy()
        for col in range(4):
            scores[rows, q[:, col]] = -np.inf
        out[s:s + block] = 1 + np.count_nonzero(scores >= answer[:, None], axis=1)
    return out


def evaluate(vectors, questions: Questions) -> AnalogyScores:
    """top-1, Hits@10 and MRR of 3CosAdd over the covered questions."""
    if questions.ids.shape[0] == 0:
        raise ValueError("no question has all four words in the vocabulary")
    r = ranks(vectors, questions.ids)
    return AnalogyScores(float(np.mean(r == 1)), float(np.mean(r <= 10)),
                         float(np.mean(1.0 / r)), int(r.size))
