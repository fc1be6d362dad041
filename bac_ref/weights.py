"""The model file: a NumPy .npz holding float32 weights and JSON metadata.

Layout (SPEC.md, "Model file"): every array lives under a stable dotted name,
e.g. ``g_a.conv0.weight`` (PyTorch layout: (out, in, kh, kw) for convolutions,
(in, out, kh, kw) for transposed convolutions), ``g_a.gdn0.beta`` (C,),
``g_a.gdn0.gamma`` (C, C); GDN parameters are the *effective* beta and gamma.
Metadata is a JSON document stored as a 0-d unicode array ``meta_json``.
Files are read with ``allow_pickle=False``: an .npz can never execute code.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

# name -> shape as a function of (N, M); checked by the loader.
PARAM_LAYOUT = {
    "g_a.conv0.weight": lambda n, m: (n, 3, 9, 9),
    "g_a.conv0.bias": lambda n, m: (n,),
    "g_a.gdn0.beta": lambda n, m: (n,),
    "g_a.gdn0.gamma": lambda n, m: (n, n),
    "g_a.conv1.weight": lambda n, m: (n, n, 5, 5),
    "g_a.conv1.bias": lambda n, m: (n,),
    "g_a.gdn1.beta": lambda n, m: (n,),
    "g_a.gdn1.gamma": lambda n, m: (n, n),
    "g_a.conv2.weight": lambda n, m: (2 * m, n, 5, 5),
    "g_a.conv2.bias": lambda n, m: (2 * m,),
    "g_s.deconv0.weight": lambda n, m: (m, n, 5, 5),
    "g_s.deconv0.bias": lambda n, m: (n,),
    "g_s.igdn0.beta": lambda n, m: (n,),
    "g_s.igdn0.gamma": lambda n, m: (n, n),
    "g_s.deconv1.weight": lambda n, m: (n, n, 5, 5),
    "g_s.deconv1.bias": lambda n, m: (n,),
    "g_s.igdn1.beta": lambda n, m: (n,),
    "g_s.igdn1.gamma": lambda n, m: (n, n),
    "g_s.deconv2.weight": lambda n, m: (n, 3, 9, 9),
    "g_s.deconv2.bias": lambda n, m: (3,),
}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_npz(path: str, arrays: dict, meta: dict, extra: dict | None = None) -> str:
    """Write arrays + meta atomically to ``path``; update the folder's MANIFEST.json.

    Returns the sha256 of the written file.
    """
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if extra:
        payload.update({k: np.asarray(v) for k, v in extra.items()})
    payload["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)  # uncompressed: float32 weights barely compress
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    digest = sha256_file(path)
    update_manifest(folder, os.path.basename(path), digest)
    return digest


def update_manifest(folder: str, name: str, digest: str) -> None:
    mpath = os.path.join(folder, "MANIFEST.json")
    manifest = {}
    if os.path.exists(mpath):
        with open(mpath) as fh:
            manifest = json.load(fh)
    manifest[name] = {"sha256": digest, "bytes": os.path.getsize(os.path.join(folder, name))}
    tmp = mpath + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, mpath)


def load_npz_arrays(path: str):
    """Read every array and the metadata (no checks beyond allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta_json"}
        meta = json.loads(str(z["meta_json"])) if "meta_json" in z.files else {}
    return arrays, meta
