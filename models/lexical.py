"""Character n-gram TF-IDF features that a head may read beside the encoder's pools.

The pools of a small multilingual encoder blur the exact words that decide many of GermEval's
labels (an aspect is often one compound: "Klimaanlage", "Verspätung", "Fahrkartenautomat"; a
railway-relevant post names the railway). Character 2–5-grams inside word boundaries keep them,
compounds and typos included, in any language. They cost a hashing pass over the text and a
sparse product per head, no second encoder pass.

The n-grams are hashed (scikit-learn's ``HashingVectorizer``: no vocabulary to store); a head
keeps only the hashed columns seen in at least ``min_df`` of its training texts, with their
inverse document frequencies (fitted by scikit-learn's ``TfidfTransformer``: sublinear tf, smooth
idf, rows L2-normalised), so a head file stores its columns, idf and weights (0.5–1.3 MB for the
builtin heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

N_FEATURES = 2**20
NGRAMS = (2, 5)
# Only a post's first characters are hashed: about what the encoder's 512-token windows read, and
# a bound on the cost (hashing is linear in the text; a mention may carry up to 100,000 characters).
# No training text of ours is longer (GermEval's longest is 1,010).
MAX_CHARS = 3000
# The n-gram block's weight beside the pools. The n-gram block is L2-normalised; the pools are
# normalised per layer, so their block's norm is the square root of the head's layer count, and
# the n-grams weigh relatively less in a head that reads more layers. Chosen by CV on GermEval
# tune: 1.0 beat 2.0 for relevance, German complaints and aspects.
LEXICAL_SCALE = 1.0


def hashed_counts(texts: Sequence[str]) -> sp.csr_matrix:
    """``[N, N_FEATURES]`` character n-gram counts of each text's first ``MAX_CHARS`` characters
    (lower-cased; one shared hashing for every head)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(analyzer="char_wb", ngram_range=NGRAMS, n_features=N_FEATURES,
                                   alternate_sign=False, norm=None, lowercase=True)
    return vectorizer.transform([text[:MAX_CHARS] for text in texts]).tocsr()


@dataclass
class LexicalFeatures:
    columns: np.ndarray  # [K] hashed columns kept (ascending)
    idf: np.ndarray  # [K]
    scale: float  # the weight of the (L2-normalised) n-gram block beside the per-layer normalised pools

    @classmethod
    def fit(cls, counts: sp.csr_matrix, scale: float, min_df: int = 2) -> "LexicalFeatures":
        from sklearn.feature_extraction.text import TfidfTransformer

        document_frequency = np.asarray((counts > 0).sum(0)).ravel()
        columns = np.flatnonzero(document_frequency >= min_df)
        if len(columns) == 0:
            raise ValueError(f"no character n-gram occurs in {min_df} or more training texts")
        idf = TfidfTransformer(sublinear_tf=True).fit(counts[:, columns]).idf_
        return cls(columns.astype(np.int64), np.asarray(idf, dtype=np.float64), float(scale))

    def transform(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """What ``TfidfTransformer(sublinear_tf=True).transform`` gives with this idf (a unit test
        holds the two equal), times ``scale``: (1 + ln tf) * idf, rows L2-normalised. Written out
        because scikit-learn's input validation costs ~1 ms per call, per head and batch, which
        for the pipeline's small batches was more than the arithmetic."""
        x = self.kept(counts)
        x.data = (1.0 + np.log(x.data)) * self.idf[x.indices]
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
        norms = np.sqrt(np.bincount(rows, weights=x.data**2, minlength=x.shape[0]))
        x.data *= self.scale / np.maximum(norms[rows], 1e-12)
        return x

    def kept(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """``counts[:, self.columns]``, found by binary search of each nonzero's column (``columns``
        ascending, never empty: ``fit`` and the head file loader make sure). SciPy's column
        indexing costs time in the full width (2^20) on every call, about 1 ms even for a batch of
        one post, and a worker calls this per head per batch."""
        at = np.minimum(np.searchsorted(self.columns, counts.indices), len(self.columns) - 1)
        keep = self.columns[at] == counts.indices
        indptr = np.concatenate([[0], np.cumsum(keep)])[counts.indptr]
        return sp.csr_matrix((counts.data[keep], at[keep], indptr), shape=(counts.shape[0], len(self.columns)))
