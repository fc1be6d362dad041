"""Install-time file lists that setup.cfg cannot express (everything else is in setup.cfg).

``data_files`` installs, under <prefix>/share/bac_ref/, the shipped models and the files
that ``bac-ref conform`` checks: data/vectors (SPEC.md §11) and data/golden (§2, §13), one
entry per folder, so that the runner works after a non-editable ``pip install .``
(bac_ref.conformance.cases.data_dir finds them there).
"""
import os

from setuptools import setup


def tree(root):
    """[(share/bac_ref/<folder>, [files of folder])] for every folder under root."""
    entries = []
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        if files:
            entries.append((os.path.join("share", "bac_ref", folder),
                            [os.path.join(folder, f) for f in sorted(files)]))
    return entries


setup(data_files=[
    ("share/bac_ref/pretrained_npz", ["pretrained_npz/bmshj2017-vae-n128.npz",
                                      "pretrained_npz/skipgram-d100.npz",
                                      "pretrained_npz/MANIFEST.json"]),
    ("share/bac_ref/data", ["data/kodim23.png"]),
] + tree("data/vectors") + tree("data/golden"))
