"""harness/data, no framework: the data sets and their hashes, the IDX reader's errors, copy-memory, the batch order."""
import gzip

import numpy as np
import pytest

from xfbench.harness.data import (DataError, accuracy, batch_order, check_fits, content_sha256, epoch_permutation,
                                  load_dataset, order_sha256, steps_per_epoch)
from xfbench.harness.data.copy_memory import copy_memory
from xfbench.harness.data.digits import bilinear_matrix, resize_bilinear, stratified_split
from xfbench.harness.errors import XfbenchError
from xfbench.harness.models import build_spec


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ---- digits ----

def test_digits_shapes_dtypes_range_and_split_sizes(digits):
    assert (digits.name, digits.kind, digits.classes) == ("digits", "image", 10)
    assert digits.x_train.shape == (1442, 1, 32, 32) and digits.x_test.shape == (355, 1, 32, 32)
    assert digits.y_train.shape == (1442,) and digits.y_test.shape == (355,)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0


def test_digits_split_is_stratified():
    from sklearn.datasets import load_digits

    per_class = np.bincount(load_digits().target)
    digits = load_dataset("digits")
    assert np.array_equal(np.bincount(digits.y_test), per_class // 5)  # floor(20%) of each class
    assert np.array_equal(np.bincount(digits.y_train), per_class - per_class // 5)


def test_digits_is_the_same_array_every_load(digits):
    again = load_dataset("digits")
    assert np.array_equal(again.x_train, digits.x_train) and np.array_equal(again.y_test, digits.y_test)
    assert again.sha256 == digits.sha256
    # A change here means records name a different data set: scikit-learn's bundled file, NumPy's
    # permutation or the resize changed. Update the literal only knowing which.
    assert digits.sha256 == "f740fc0cc4b3d9b25c0df152eff132802e7f699336902ca0d702e94a2ade7ca0"


def test_the_arrays_are_read_only(digits):
    with pytest.raises(ValueError):
        digits.x_train[0, 0, 0, 0] = 1.0


def test_bilinear_half_pixel_on_a_hand_computed_array():
    # 2 -> 4: output pixel d samples s = (d + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1].
    assert np.array_equal(bilinear_matrix(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    out = resize_bilinear(np.array([[[0.0, 1.0], [2.0, 3.0]]]), 4)
    assert np.array_equal(out[0], [[0.0, 0.25, 0.75, 1.0],
                                   [0.5, 0.75, 1.25, 1.5],
                                   [1.5, 1.75, 2.25, 2.5],
                                   [2.0, 2.25, 2.75, 3.0]])


def test_bilinear_rows_sum_to_one_and_same_size_is_identity():
    assert np.allclose(bilinear_matrix(8, 32).sum(axis=1), 1.0)
    assert np.array_equal(bilinear_matrix(5, 5), np.eye(5))


def test_stratified_split_depends_on_its_seed_only():
    labels = np.repeat(np.arange(3), 10)
    train, test = stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(np.bincount(labels[test]), [2, 2, 2])
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(30))
    assert np.array_equal(stratified_split(labels, 0.2, seed=1)[1], test)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=2)[1], test)


def test_content_hash_sees_values_dtype_and_shape():
    a = np.arange(6, dtype=np.int32)
    h = content_sha256({"a": a})
    assert content_sha256({"a": a.copy()}) == h
    assert content_sha256({"a": a.astype(np.int64)}) != h
    assert content_sha256({"a": a.reshape(2, 3)}) != h
    assert content_sha256({"a": a + (a == 5)}) != h


# ---- mnist:DIR ----

def write_idx(path, array, magic, gz=False):
    data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def write_mnist(folder, n_train=3, n_test=2, gz=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x803, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8), 0x801, gz)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_mnist_reads_idx_files_pads_and_scales(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    mnist = load_dataset(f"mnist:{tmp_path}")
    assert mnist.x_train.shape == (3, 1, 32, 32) and mnist.x_test.shape == (2, 1, 32, 32)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int32
    assert np.array_equal(mnist.y_train, [0, 1, 2])
    raw = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    assert np.array_equal(mnist.x_train[:, 0, 2:30, 2:30], raw.astype(np.float32) / 255)
    border = mnist.x_train.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()  # the two-pixel frame is zeros


def test_mnist_raw_and_gzip_are_the_same_data_set(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "gz").mkdir()
    write_mnist(tmp_path / "raw")
    write_mnist(tmp_path / "gz", gz=True)
    assert load_dataset(f"mnist:{tmp_path / 'raw'}").sha256 == load_dataset(f"mnist:{tmp_path / 'gz'}").sha256


def test_mnist_missing_file_names_which_and_where(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=rf"no t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte.gz\) in {tmp_path}"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset(f"mnist:{tmp_path / 'nowhere'}")


def test_mnist_bad_magic_names_the_file_and_both_numbers(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((3, 28, 28), np.uint8), 0x803)  # images as labels
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: magic number 0x00000803 \(2051\), "
                                        r"expected 0x00000801 \(2049\)"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_counts_that_differ(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8), 0x801)
    with pytest.raises(DataError, match="train-images-idx3-ubyte holds 3 images but train-labels-idx1-ubyte "
                                        "holds 2 labels"):
        load_dataset(f"mnist:{tmp_path}")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_mnist_truncated_file(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-100])  # gzip: a stream cut short; raw: images cut short
    with pytest.raises(DataError, match="truncated"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_truncated_header(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes((0x803).to_bytes(4, "big") + b"\0\0\0\2")
    with pytest.raises(DataError, match="truncated inside its header"):
        load_dataset(f"mnist:{tmp_path}")


def test_errors_are_xfbench_errors_on_one_line(tmp_path):
    with pytest.raises(XfbenchError) as e:
        load_dataset(f"mnist:{tmp_path}")
    assert "\n" not in str(e.value)


# ---- copy-memory ----

def test_copy_memory_targets_by_construction():
    task = load_dataset("copy-memory", seq_len=9, copy_len=3, symbols=4, train=50, test=10)
    x, y = task.x_train, task.y_train
    assert x.shape == y.shape == (50, 9) and x.dtype == y.dtype == np.int32
    assert np.array_equal(y[:, -3:], x[:, :3])  # the first three symbols, repeated after the delimiter
    assert not y[:, :-3].any() and not x[:, 3:5].any() and not x[:, -3:].any()  # blanks elsewhere
    assert (x[:, 5] == 5).all()  # the delimiter, symbols + 1, at seq_len - copy_len - 1
    assert x[:, :3].min() >= 1 and x[:, :3].max() <= 4
    assert (task.classes, task.chance) == (6, 0.25)
    assert np.array_equal(task.answer_mask, [False] * 6 + [True] * 3)


def test_copy_memory_is_deterministic_for_a_seed_and_differs_for_another():
    a, b = load_dataset("copy-memory", seed=3), load_dataset("copy-memory", seed=3)
    assert np.array_equal(a.x_train, b.x_train) and a.sha256 == b.sha256
    c = load_dataset("copy-memory", seed=4)
    assert not np.array_equal(a.x_train, c.x_train) and a.sha256 != c.sha256
    assert np.array_equal(copy_memory(4, 9, 3, 4, np.random.default_rng(1))[0],
                          copy_memory(4, 9, 3, 4, np.random.default_rng(1))[0])


def test_copy_memory_test_set_does_not_move_with_the_train_size():
    small, large = load_dataset("copy-memory", train=10), load_dataset("copy-memory", train=20)
    assert np.array_equal(small.x_test, large.x_test)
    assert np.array_equal(small.x_train, large.x_train[:10])


def test_copy_memory_metric_chance_and_perfect():
    task = load_dataset("copy-memory", test=2000)
    assert accuracy(task.y_test, task.y_test, task.answer_mask) == 1.0
    blanks = np.zeros_like(task.y_test)  # right at every non-answer position, wrong at every answer
    assert accuracy(blanks, task.y_test, task.answer_mask) == 0.0
    guess = np.random.default_rng(9).integers(1, 9, task.y_test.shape)
    assert accuracy(guess, task.y_test, task.answer_mask) == pytest.approx(task.chance, abs=0.01)


def test_copy_memory_fits_the_spec_token_models():
    check_fits(load_dataset("copy-memory", seq_len=5, copy_len=2, train=4, test=4), build_spec("lstm", **{
        "vocab": 50, "embed": 8, "hidden": 4, "layers": 2, "seq_len": 5}))
    check_fits(load_dataset("copy-memory", train=4, test=4), build_spec("gru"))
    with pytest.raises(DataError, match="vocab=8, data set copy-memory needs at least 10; raise vocab"):
        check_fits(load_dataset("copy-memory", train=4, test=4), build_spec("gru", vocab=8))
    with pytest.raises(DataError, match="set the model's seq_len to match"):
        check_fits(load_dataset("copy-memory", train=4, test=4), build_spec("gru", seq_len=20))


def test_digits_fits_lenet5_not_alexnet_nor_lstm(digits):
    check_fits(digits, build_spec("lenet5"))
    check_fits(digits, build_spec("lenet5-classic"))
    with pytest.raises(DataError, match="takes input"):
        check_fits(digits, build_spec("alexnet"))
    with pytest.raises(DataError, match="is a sequence model"):
        check_fits(digits, build_spec("lstm"))


@pytest.mark.parametrize("options, message", [
    ({"seq_len": 20}, "seq_len=20 is too short for copy_len=10 \\(needs at least 21\\)"),
    ({"width": 3}, "copy-memory has no option width; it takes seq_len, copy_len"),
    ({"symbols": 0}, "symbols must be a positive integer, got 0"),
    ({"train": 1.5}, "train must be a positive integer, got 1.5"),
])
def test_copy_memory_refuses_bad_options(options, message):
    with pytest.raises(DataError, match=message):
        load_dataset("copy-memory", **options)


# ---- load_dataset ----

def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown data set 'cifar10'; choose one of digits, mnist:DIR, copy-memory"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="write mnist:DIR"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="data set digits takes no options, got seed"):
        load_dataset("digits", seed=1)


# ---- batch order ----

def test_same_seed_same_order_and_hash_different_seed_different():
    a = list(batch_order(100, 8, seed=0, epochs=3))
    b = list(batch_order(100, 8, seed=0, epochs=3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and order_sha256(a) == order_sha256(b)
    assert order_sha256(a) != order_sha256(batch_order(100, 8, seed=1, epochs=3))


def test_every_index_once_per_epoch_and_the_remainder_dropped():
    batches = list(batch_order(12, 4, seed=5, epochs=2))
    assert len(batches) == 2 * steps_per_epoch(12, 4) == 6
    for e in range(2):
        assert np.array_equal(np.sort(np.concatenate(batches[3 * e: 3 * e + 3])), np.arange(12))
    assert not np.array_equal(np.concatenate(batches[:3]), np.concatenate(batches[3:]))  # reshuffled
    ragged = list(batch_order(10, 4, seed=5, epochs=1))  # 10 = 2 x 4 + 2: two dropped
    seen = np.concatenate(ragged)
    assert [len(b) for b in ragged] == [4, 4] and len(np.unique(seen)) == 8
    assert np.array_equal(seen, epoch_permutation(10, 5, 0)[:8])


def test_a_step_budget_runs_across_epochs():
    by_steps = list(batch_order(10, 3, seed=2, steps=7))  # 3 per epoch: epochs 0, 1 and one batch of 2
    by_epochs = list(batch_order(10, 3, seed=2, epochs=3))
    assert len(by_steps) == 7 and order_sha256(by_steps) == order_sha256(by_epochs[:7])
    assert np.array_equal(by_steps[6], epoch_permutation(10, 2, 2)[:3])


def test_the_batch_order_is_pinned():
    # The same bits on every machine and NumPy release that keeps PCG64's permutation: records compare by it.
    assert [b.tolist() for b in batch_order(10, 3, seed=0, epochs=2)] == [
        [4, 6, 2], [7, 3, 5], [9, 0, 8], [9, 1, 3], [8, 7, 6], [0, 4, 2]]


def test_order_hash_sees_batch_boundaries_and_dtype_does_not_matter():
    flat = order_sha256([np.arange(4)])
    assert order_sha256([np.arange(2), np.arange(2, 4)]) != flat
    assert order_sha256([np.arange(4, dtype=np.int32)]) == flat


def test_batch_order_refuses_what_cannot_be_run():
    with pytest.raises(DataError, match="batch size 11 does not fit 10 training examples"):
        batch_order(10, 11, seed=0, epochs=1)
    with pytest.raises(DataError, match="exactly one of them"):
        batch_order(10, 2, seed=0)
    with pytest.raises(DataError, match="exactly one of them"):
        batch_order(10, 2, seed=0, epochs=1, steps=5)
