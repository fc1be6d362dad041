r"""NumPy float32 layers of the transforms: conv, transposed conv, GDN, IGDN (SPEC.md §7.1).

Every function works on one image in channel-first layout, ``x.shape == (C, H, W)``,
float32 in and float32 out, and follows PyTorch's ``torch.nn.functional`` conventions
(dilation 1, groups 1, zero padding) so that weights exported from PyTorch are used as is.

Convolution (cross-correlation, as in PyTorch), weight ``(C_out, C_in, k_h, k_w)``:

    y[o, u, v] = b[o] + sum_{c, i, j} w[o, c, i, j] * x_pad[c, s*u + i, s*v + j]

    x_pad = x with ``p`` zero rows/columns on every side,
    H_out = floor((H + 2p - k_h) / s) + 1            (likewise W_out)

Transposed convolution, weight ``(C_in, C_out, k_h, k_w)`` (PyTorch's layout), is the
adjoint of that convolution: for zero bias and matching shapes

    < conv(x; w), y >  ==  < x, conv_transpose(y; w) >      for all x, y.

Written as a scatter, every input pixel paints a k x k patch of the "full" output
(size (H-1)*s + k), which is then cropped by p at the start:

    full[o, s*h + i, s*w' + j] += x[c, h, w'] * w[c, o, i, j]
    y[o, u, v] = b[o] + full[o, u + p, v + p]        (full read as 0 beyond its end)
    H_out = (H - 1)*s - 2p + k_h + output_padding    (likewise W_out; 0 <= output_padding < s)

``output_padding`` only chooses which of the s candidate output sizes is meant; it adds
rows and columns at the bottom/right (where ``full`` is zero unless p > 0 covers them).

GDN (Balle et al. 2016) and its inverse, beta ``(C,)`` > 0, gamma ``(C, C)`` >= 0:

    GDN:   y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)
    IGDN:  y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2)

Implementation (float32 throughout):

- conv2d: the padded input is split into its s*s polyphase components, so every tap
  (i, j) is a unit-stride window; ``im2col`` copies the windows into a (C_in*k*k, rows*W_out)
  matrix and one BLAS product with the (C_out, C_in*k*k) weight gives a block of output rows.
- conv_transpose2d: one BLAS product (C_out*k*k, C_in) @ (C_in, rows*W) per block of *input*
  rows, then ``col2im``: k*k unit-stride adds into an accumulator kept in polyphase layout,
  finally cropped, interleaved and biased in one pass.
- GDN / IGDN: ``gamma (C, C) @ x^2 (C, P)`` per block of GDN_CHUNK pixels.

Row blocks keep the im2col / col2im matrix below ``COLS_BUDGET`` float32 elements (a
768x512 image needs a single block per layer), so the peak memory grows with the image
only through the activations: about three activation tensors at a time.
Results equal a float64 evaluation up to float32 round-off (tolerance: SPEC.md §7.3);
they are not bit-exact across BLAS libraries and are not meant to be.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "conv2d", "conv_transpose2d", "gdn", "igdn",
    "conv2d_output_size", "conv_transpose2d_output_size", "COLS_BUDGET", "GDN_CHUNK",
]

#: Largest im2col / col2im scratch matrix, in float32 elements (2**25 = 128 MiB).
COLS_BUDGET = 1 << 25
#: Pixels per block in GDN / IGDN (temporaries: two (C, GDN_CHUNK) float32 arrays).
GDN_CHUNK = 1 << 14


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """floor((size + 2*padding - kernel) / stride) + 1, PyTorch's Conv2d rule (SPEC.md §7.1)."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose2d_output_size(size: int, kernel: int, stride: int, padding: int,
                                 output_padding: int = 0) -> int:
    """(size-1)*stride - 2*padding + kernel + output_padding, PyTorch's ConvTranspose2d rule."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def _check_image(x: np.ndarray, channels: int, what: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 3:
        raise TypeError(f"{what}: expected a float32 array (C, H, W), got "
                        f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
    if x.shape[0] != channels:
        raise ValueError(f"{what}: input has {x.shape[0]} channels, weight expects {channels}")


def _check_conv_args(weight, bias, stride, padding, out_ch):
    if weight.ndim != 4 or weight.dtype != np.float32:
        raise TypeError(f"weight must be float32 (.., .., kh, kw), got {weight.dtype} {weight.shape}")
    if bias is not None and (bias.shape != (out_ch,) or bias.dtype != np.float32):
        raise TypeError(f"bias must be float32 ({out_ch},), got {bias.dtype} {bias.shape}")
    if stride < 1 or padding < 0:
        raise ValueError(f"need stride >= 1 and padding >= 0, got {stride}, {padding}")


def _rows_per_block(elems_per_row: int, rows: int) -> int:
    return max(1, min(rows, COLS_BUDGET // max(1, elems_per_row)))


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
           stride: int = 1, padding: int = 0) -> np.ndarray:
    """Strided 2-D convolution with zero padding, as ``torch.nn.functional.conv2d``.

    x: (C_in, H, W) float32; weight: (C_out, C_in, kh, kw); bias: (C_out,) or None.
    Returns (C_out, H_out, W_out) float32 (sizes: module docstring).
    """
    c_out, c_in, kh, kw = weight.shape
    _check_image(x, c_in, "conv2d")
    _check_conv_args(weight, bias, stride, padding, c_out)
    _, h, w = x.shape
    s, p = stride, padding
    h_out = conv2d_output_size(h, kh, s, p)
    w_out = conv2d_output_size(w, kw, s, p)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"conv2d: input {h}x{w} smaller than kernel {kh}x{kw} after padding {p}")

    # Polyphase split of the zero-padded input x_pad (size (H+2p) x (W+2p), rounded up to
    # multiples of s): phase[c, a, b, u, v] = x_pad[c, s*u + a, s*v + b], so that tap
    # (i, j) = (s*di + a, s*dj + b) reads the unit-stride window phase[:, a, b, di:di+H_out, dj:dj+W_out].
    # It is filled straight from x, without materialising x_pad.
    hq, wq = -(-(h + 2 * p) // s), -(-(w + 2 * p) // s)
    phase = np.zeros((c_in, s, s, hq, wq), dtype=np.float32)   # (C_in, s, s, Hq, Wq)
    for a in range(s):
        u0 = -(-(p - a) // s) if p > a else 0                    # first u with s*u + a - p >= 0
        u1 = min(hq, -(-(h + p - a) // s))                       # one past the last with ... < H
        for b in range(s):
            v0 = -(-(p - b) // s) if p > b else 0
            v1 = min(wq, -(-(w + p - b) // s))
            if u1 > u0 and v1 > v0:
                phase[:, a, b, u0:u1, v0:v1] = x[:, s * u0 + a - p::s, s * v0 + b - p::s][
                    :, :u1 - u0, :v1 - v0]

    w2 = weight.reshape(c_out, c_in * kh * kw)                # (C_out, K), K = C_in*kh*kw
    out = np.empty((c_out, h_out, w_out), dtype=np.float32)   # (C_out, H_out, W_out)
    block = _rows_per_block(c_in * kh * kw * w_out, h_out)
    cols = np.empty((c_in, kh, kw, block, w_out), dtype=np.float32)  # (C_in, kh, kw, rows, W_out)
    for r0 in range(0, h_out, block):
        r1 = min(r0 + block, h_out)
        n = r1 - r0
        c = cols if n == block else np.empty((c_in, kh, kw, n, w_out), dtype=np.float32)
        for i in range(kh):
            di, a = divmod(i, s)
            for j in range(kw):
                dj, b = divmod(j, s)
                c[:, i, j] = phase[:, a, b, r0 + di:r1 + di, dj:dj + w_out]   # (C_in, rows, W_out)
        res = out[:, r0:r1].reshape(c_out, n * w_out)        # a view: whole rows of (H_out, W_out)
        if not np.may_share_memory(res, out):
            raise AssertionError("conv2d: output block is not a view")
        np.matmul(w2, c.reshape(c_in * kh * kw, n * w_out), out=res)  # (C_out, rows*W_out)
    if bias is not None:
        out += bias[:, None, None]
    return out


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                     stride: int = 1, padding: int = 0, output_padding: int = 0) -> np.ndarray:
    """Transposed 2-D convolution, as ``torch.nn.functional.conv_transpose2d``.

    x: (C_in, H, W) float32; weight: (C_in, C_out, kh, kw); bias: (C_out,) or None.
    Returns (C_out, H_out, W_out), H_out = (H-1)*stride - 2*padding + kh + output_padding.
    """
    c_in, c_out, kh, kw = weight.shape
    _check_image(x, c_in, "conv_transpose2d")
    _check_conv_args(weight, bias, stride, padding, c_out)
    s, p, op = stride, padding, output_padding
    if not 0 <= op < s:
        raise ValueError(f"conv_transpose2d: need 0 <= output_padding < stride, got {op}, {s}")
    _, h, w = x.shape
    h_out = conv_transpose2d_output_size(h, kh, s, p, op)
    w_out = conv_transpose2d_output_size(w, kw, s, p, op)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"conv_transpose2d: empty output for input {h}x{w}")

    # "full" output before cropping; long enough to hold rows p .. p+H_out-1 too.  It is
    # accumulated in polyphase layout, acc[o, a, b, u, v] = full[o, s*u + a, s*v + b], so
    # that every tap adds a unit-stride window (tap i = s*di + a moves rows by di).
    hq = -(-max((h - 1) * s + kh, p + h_out) // s)
    wq = -(-max((w - 1) * s + kw, p + w_out) // s)
    acc = np.zeros((c_out, s, s, hq, wq), dtype=np.float32)  # (C_out, s, s, Hf/s, Wf/s)
    wt = weight.reshape(c_in, c_out * kh * kw).T              # (C_out*kh*kw, C_in), a transposed view
    block = _rows_per_block(c_out * kh * kw * w, h)
    xs = np.ascontiguousarray(x)
    for r0 in range(0, h, block):
        r1 = min(r0 + block, h)
        n = r1 - r0
        cols = wt @ xs[:, r0:r1].reshape(c_in, n * w)         # (C_out*kh*kw, rows*W)
        cols = cols.reshape(c_out, kh, kw, n, w)              # (C_out, kh, kw, rows, W)
        # col2im: tap (i, j) of input pixel (r, q) lands on full[:, s*r + i, s*q + j].
        for i in range(kh):
            di, a = divmod(i, s)
            for j in range(kw):
                dj, b = divmod(j, s)
                acc[:, a, b, r0 + di:r1 + di, dj:dj + w] += cols[:, i, j]   # (C_out, rows, W)
        del cols
    # Crop, interleave the phases and add the bias in one pass: output row u is full row
    # u + p = s*U + a, i.e. rows u = (a - p) mod s, ... of the output come from phase a.
    out = np.empty((c_out, h_out, w_out), dtype=np.float32)  # (C_out, H_out, W_out)
    bias3 = (np.zeros(1, np.float32) if bias is None else bias)[:, None, None]   # (C_out or 1, 1, 1)
    for a in range(s):
        u0 = (a - p) % s
        nu = len(range(u0, h_out, s))
        for b in range(s):
            v0 = (b - p) % s
            nv = len(range(v0, w_out, s))
            if nu and nv:
                uu, vv = (u0 + p) // s, (v0 + p) // s
                np.add(acc[:, a, b, uu:uu + nu, vv:vv + nv], bias3,
                       out=out[:, u0::s, v0::s])                 # (C_out, nu, nv)
    return out


def _gdn(x: np.ndarray, beta: np.ndarray, gamma: np.ndarray, inverse: bool) -> np.ndarray:
    c = x.shape[0]
    _check_image(x, c, "igdn" if inverse else "gdn")
    if beta.shape != (c,) or gamma.shape != (c, c):
        raise ValueError(f"GDN over {c} channels needs beta ({c},) and gamma ({c}, {c}), "
                         f"got {beta.shape} and {gamma.shape}")
    x2 = x.reshape(c, -1)                                     # (C, P), P = H*W
    out = np.empty_like(x2)                                   # (C, P)
    step = max(1, GDN_CHUNK)
    for a in range(0, x2.shape[1], step):                     # column blocks keep temporaries small
        xb = x2[:, a:a + step]                                # (C, p)
        norm = np.matmul(gamma, np.square(xb))                # (C, p): sum_j gamma_ij x_j^2
        norm += beta[:, None]
        np.sqrt(norm, out=norm)
        if inverse:
            np.multiply(xb, norm, out=out[:, a:a + step])
        else:
            np.divide(xb, norm, out=out[:, a:a + step])
    return out.reshape(x.shape)                               # (C, H, W)


def gdn(x: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """GDN: y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); x (C, H, W), beta (C,), gamma (C, C)."""
    return _gdn(x, beta, gamma, inverse=False)


def igdn(x: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Inverse GDN: y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2); shapes as :func:`gdn`."""
    return _gdn(x, beta, gamma, inverse=True)
