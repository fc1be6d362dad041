"""Conformance: the vectors of SPEC.md §11 and §13, their runners and their generator.

* :mod:`.runner`: checks a decoder or encoder (bac_ref itself or an external command)
  against ``data/vectors`` (``bac-ref conform``, ``python -m bac_ref.conformance``);
* :mod:`.cases`: what a case is made of, shared by the runner and the generator;
* :mod:`.generate`: writes ``data/vectors`` and ``data/golden/coder``;
* :mod:`.bacw`: the .bacw golden vectors (SPEC.md §13) and their runner;
* :mod:`.spec_walk`: SPEC.md §9 re-derived from the text alone, a deliberate second
  implementation that checks :mod:`bac_ref.entropy_model`.

Nothing in the codec imports this package.
"""
