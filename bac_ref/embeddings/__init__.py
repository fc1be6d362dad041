"""Word embeddings: the paper's §5.2 experiment, on top of the codec.

* :mod:`.corpus`: text -> vocabulary -> skip-gram pairs;
* :mod:`.skipgram`: Bayesian skip-gram training (PyTorch, extra ``train``);
* :mod:`.analogy`: 3CosAdd analogy scores;
* :mod:`.bacw`: the .bacw container for VBQ-compressed embedding matrices (SPEC.md §13);
* :mod:`.benchmark`: ``bac-ref embeddings``, the rate / analogy-score benchmark.

Nothing in the codec imports this package.
"""
