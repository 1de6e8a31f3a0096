"""`digits`: scikit-learn's bundled handwritten digits, resized once to LeNet-5's 32x32 (docs/spec.md section 4.1).

1,797 images of 8x8 pixels, 17 grey levels (0..16), 10 classes of 174 to 183 images each; shipped inside
scikit-learn, so no network is needed. The resize is bilinear with half-pixel centres, written here in
NumPy so that every framework trains on the very same array (framework resizers differ in rounding,
antialiasing and corner alignment). On these images it is exact: weights are multiples of 1/8 and
pixels of 1/16, so every output is a multiple of 1/1024, the same bits on any machine and in float32,
and equal to torch's, TensorFlow's and JAX's bilinear upsampling (docs/spec.md section 4.1). The split
is stratified and seeded with a fixed seed: it is part of the data set, not of a run, so every seed of a
convergence run is evaluated on the same test images.
"""
from __future__ import annotations

import numpy as np

from .dataset import Dataset

SIZE = 32  # LeNet-5's input side (docs/spec.md section 1.1)
TEST_FRACTION = 0.2  # of each class, rounded down: 355 test, 1,442 train images
SPLIT_SEED = 0


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 weights of 1-D linear interpolation with half-pixel centres.

    Output pixel d samples the input at s = (d + 0.5) * n_in / n_out - 0.5, clamped to [0, n_in - 1],
    mixing pixels floor(s) and floor(s) + 1 with weights 1 - frac(s) and frac(s) (no antialiasing): the
    rule of torch `interpolate(mode="bilinear", align_corners=False)` and `tf.image.resize(method="bilinear")`.
    """
    s = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.floor(s).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = s - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) -> (N, size, size) float64: rows then columns, each by `bilinear_matrix` (separable)."""
    _, h, w = images.shape
    rows, cols = bilinear_matrix(h, size), bilinear_matrix(w, size)
    return np.einsum("oh,nhw,pw->nop", rows, images.astype(np.float64), cols)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices: per class, a seeded permutation's first floor(count * fraction) are test."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):  # ascending: the generator's draws follow a fixed class order
        members = np.flatnonzero(labels == c)
        test.append(rng.permutation(members)[: int(len(members) * test_fraction)])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def load_digits() -> Dataset:
    """The `digits` data set: (N, 1, 32, 32) float32 in [0, 1], int32 labels, the fixed stratified split."""
    from sklearn.datasets import load_digits as sklearn_digits  # imported here: ~1 s, only when asked for

    bunch = sklearn_digits()
    images = resize_bilinear(bunch.images / 16.0, SIZE).astype(np.float32)[:, None]  # (N, 1, 32, 32)
    labels = bunch.target.astype(np.int32)
    train, test = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    return Dataset("digits", "image", images[train], labels[train], images[test], labels[test],
                   classes=10, chance=0.1,
                   params={"size": SIZE, "test_fraction": TEST_FRACTION, "split_seed": SPLIT_SEED})
