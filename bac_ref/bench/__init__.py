"""Benchmarks: figures, never part of coding or decoding.

* :mod:`.rd`: ``bac-ref bench``, rate-distortion of VBQ against baselines and image codecs;
* :mod:`.baselines`: the baseline quantizers with real entropy coding (SPEC.md §12);
* :mod:`.evaluate`: MS-SSIM, Bjontegaard deltas, Pareto fronts (bpp and PSNR: :mod:`bac_ref.metrics`);
* the scripts ``bench_*.py``, ``eval_model.py``, ``compare_empirical_priors.py``: each prints
  its figures (``python -m bac_ref.bench.<script>``).
"""
