"""`mnist:DIR`: the MNIST IDX files a user already has, raw or gzip, padded to 32x32 (docs/spec.md section 4.1).

xfbench downloads nothing: DIR must hold the four files under their distributed names. Images are
zero-padded by 2 pixels on each side, 28x28 -> 32x32, as LeCun et al. (1998) fed LeNet-5, then scaled
by 1/255 to [0, 1]. Fashion-MNIST ships in the same format and names, and loads the same way.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .dataset import Dataset, DataError

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, columns)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
FILES = {  # split -> (images, labels), as distributed
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
PAD = 2  # pixels on each side: 28 + 2 * 2 = 32


def find_idx(directory: Path, name: str) -> Path:
    """`name` in `directory`, raw or `.gz`; some copies write `train-images.idx3-ubyte`, also accepted."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (directory / candidate).is_file():
            return directory / candidate
    raise DataError(f"mnist: no {name} (or {name}.gz) in {directory}; put the four MNIST IDX files there")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The unsigned-byte array of an IDX file (raw or gzip) whose magic number must be `magic`."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file's name says
            raw = gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: the gzip stream is truncated; download the file again") from None
    except (OSError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({e}); download the file again") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, not even a magic number; download the file again")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "image" if magic == IMAGES_MAGIC else "label"
        raise DataError(f"{path}: magic number {found:#010x} ({found}), expected {magic:#010x} ({magic}) "
                        f"for an IDX {kind} file; is it the right file?")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated inside its header ({len(raw)} of {header} bytes); download the file again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        state = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise DataError(f"{path}: {state}: the header promises {expected:,} bytes of data for shape {shape}, "
                        f"the file holds {len(raw) - header:,}; download the file again")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split: images (N, 1, 32, 32) float32 in [0, 1] and labels (N,) int32."""
    image_name, label_name = FILES[split]
    image_path, label_path = find_idx(directory, image_name), find_idx(directory, label_name)
    images, labels = read_idx(image_path, IMAGES_MAGIC), read_idx(label_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"mnist: in {directory}, {image_path.name} holds {len(images):,} images but "
                        f"{label_path.name} holds {len(labels):,} labels; both must come from the same download")
    if images.shape[1:] != (28, 28):
        raise DataError(f"mnist: {image_path} holds {images.shape[1]}x{images.shape[2]} images, expected 28x28")
    if len(labels) and labels.max() > 9:
        raise DataError(f"mnist: {label_path} holds label {labels.max()}, expected 0..9")
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))
    return (padded.astype(np.float32) / np.float32(255))[:, None], labels.astype(np.int32)


def load_mnist(directory: str | Path) -> Dataset:
    """The `mnist:DIR` data set: the train and t10k files of `directory`, as they are (60,000 / 10,000)."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"mnist: {directory} is not a folder; write mnist:DIR, DIR the folder of the IDX files")
    x_train, y_train = read_split(directory, "train")
    x_test, y_test = read_split(directory, "test")
    return Dataset("mnist", "image", x_train, y_train, x_test, y_test, classes=10, chance=0.1,
                   params={"directory": str(directory.resolve()), "pad": PAD})
