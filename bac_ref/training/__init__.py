"""Training and release of the image model (not needed to code or decode).

* :mod:`.train`: training the Gaussian VAE (PyTorch, extra ``train``);
* :mod:`.prior_fit`: fitting the coding prior's quantile tables (KDE, Balle et al. 2018);
* :mod:`.release`: trained weights + fitted prior -> a model file and its card.

Nothing in the codec imports this package.
"""
