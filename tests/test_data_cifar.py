"""CIFAR10 reading: every format on small files written here in that exact format, every
error case, the restricted unpickler, download, the cache, and one test on the real data."""
import hashlib
import io
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import missing

from minimix.data import CIFAR10, CIFAR10_MEAN, CIFAR10_STD, CLASSES, DatasetError, cifar, download
from minimix.data.cifar import find_source
from minimix.data.safe_pickle import restricted_loads

REAL_DATA = os.environ.get("MINIMIX_DATA")  # read before the fixture below hides it
REAL_CACHE = os.environ.get("MINIMIX_CACHE")
BATCH = 10  # images per batch in the small official-format files (one of each class)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache folder and no $MINIMIX_DATA, so tests never touch the user's files."""
    monkeypatch.setenv("MINIMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIMIX_DATA", raising=False)


@pytest.fixture
def splits():
    """{"train": (images, labels), "test": ...}: 5 batches of train, 1 of test, random pixels, the
    classes in random order but equally many of each (as in CIFAR-10, which the reader checks)."""
    rng = np.random.default_rng(0)
    return {split: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                    rng.permutation(np.arange(n) % 10).astype(np.int64))
            for split, n in (("train", 5 * BATCH), ("test", BATCH))}


# ---------------------------------------------------------------- writers of each format

def _pickle_str(b: bytes) -> bytes:  # Python 2 str: SHORT_BINSTRING or BINSTRING
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _pickle_int(v: int) -> bytes:
    return b"K" + bytes([v]) if v < 256 else b"J" + struct.pack("<i", v)


def py2_pickle_batch(data: np.ndarray, labels) -> bytes:
    """The bytes Python 2's cPickle (protocol 2) writes for an official batch dict: str keys
    and values, ``numpy.core.multiarray._reconstruct`` for the uint8 array."""
    n, m = data.shape
    dtype = (b"cnumpy\ndtype\n" + _pickle_str(b"u1") + _pickle_int(0) + _pickle_int(1) + b"\x87R"
             + b"(" + _pickle_int(3) + _pickle_str(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2
             + _pickle_int(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _pickle_int(0)
             + b"\x85" + _pickle_str(b"b") + b"\x87R" + b"(" + _pickle_int(1) + _pickle_int(n)
             + _pickle_int(m) + b"\x86" + dtype + b"\x89" + _pickle_str(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(_pickle_int(int(v)) for v in labels) + b"e"
    names = b"](" + b"".join(_pickle_str(b"img_%d.png" % i) for i in range(n)) + b"e"
    return (b"\x80\x02}(" + _pickle_str(b"batch_label") + _pickle_str(b"training batch")
            + _pickle_str(b"labels") + label_list + _pickle_str(b"data") + array
            + _pickle_str(b"filenames") + names + b"u.")


def planes(images: np.ndarray) -> np.ndarray:
    """NHWC images -> official rows: 1024 R values, then 1024 G, then 1024 B."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def batches(splits):
    """(file stem, images, labels) of the 6 official batches."""
    out = []
    for i in range(5):
        part = slice(i * BATCH, (i + 1) * BATCH)
        out.append((f"data_batch_{i + 1}", splits["train"][0][part], splits["train"][1][part]))
    return out + [("test_batch", *splits["test"])]


def write_python_version(folder: Path, splits, protocol=None) -> Path:
    """The official batches (``protocol=None``: as Python 2 wrote them), or re-pickled by Python 3."""
    folder.mkdir(parents=True)
    for name, images, labels in batches(splits):
        if protocol is None:
            content = py2_pickle_batch(planes(images), labels)
        else:
            content = pickle.dumps({b"data": planes(images), b"labels": [int(v) for v in labels]},
                                   protocol=protocol)
        (folder / name).write_bytes(content)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return folder


def write_binary_version(folder: Path, splits) -> Path:
    folder.mkdir(parents=True)
    for name, images, labels in batches(splits):
        records = np.concatenate([labels.astype(np.uint8)[:, None], planes(images)], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return folder


def write_image_tree(root: Path, splits, ext=".png") -> Path:
    from PIL import Image

    for split, (images, labels) in splits.items():
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:04d}{ext}", quality=95, subsampling=0)
    return root


def make_tar(archive: Path, folder: Path, shuffle=False) -> Path:
    """tar.gz of ``folder`` (as its top folder); ``shuffle`` stores the files in random order."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        if not shuffle:
            tar.add(folder, arcname=folder.name)
            return archive
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for i in np.random.default_rng(0).permutation(len(files)):
            tar.add(files[i], arcname=f"{folder.name}/{files[i].relative_to(folder).as_posix()}")
    return archive


def tree_order(splits):
    """Image-folder readers sort by (label, file name); file names are the original indices."""
    return {s: (x[np.lexsort((np.arange(len(y)), y))], np.sort(y, kind="stable"))
            for s, (x, y) in splits.items()}


def assert_loads(root, expected, **kwargs):
    for split, train in (("train", True), ("test", False)):
        data = CIFAR10(root, train=train, **kwargs)
        images, labels = expected[split]
        assert data.images.dtype == np.uint8 and data.images.shape == images.shape
        assert data.labels.dtype == np.int64
        np.testing.assert_array_equal(data.labels, labels)
        np.testing.assert_array_equal(data.images, images)
    assert data.classes == CLASSES == ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                       "frog", "horse", "ship", "truck")


# ---------------------------------------------------------------- each format reads back exactly

@pytest.mark.parametrize("protocol", [None, 2, 5], ids=["python2", "python3-protocol2", "protocol5"])
@pytest.mark.parametrize("layout", ["folder", "parent-of-folder", "archive", "parent-of-archive"])
def test_python_version(tmp_path, splits, layout, protocol):
    folder = write_python_version(tmp_path / "d" / "cifar-10-batches-py", splits, protocol)
    if "archive" in layout:
        make_tar(tmp_path / "cifar-10-python.tar.gz", folder)
        root = tmp_path / "cifar-10-python.tar.gz" if layout == "archive" else tmp_path
    else:
        root = folder if layout == "folder" else folder.parent
    assert_loads(root, splits)


@pytest.mark.parametrize("layout", ["folder", "parent-of-folder", "archive", "renamed-archive"])
def test_binary_version(tmp_path, splits, layout):
    folder = write_binary_version(tmp_path / "d" / "cifar-10-batches-bin", splits)
    if layout == "folder":
        root = folder
    elif layout == "parent-of-folder":
        root = folder.parent
    else:  # a renamed archive is recognised by the folder name inside it
        root = make_tar(tmp_path / ("cifar-10-binary.tar.gz" if layout == "archive" else "x.tgz"), folder)
    assert_loads(root, splits)


@pytest.mark.parametrize("layout", ["tree", "subfolder"])
def test_image_folder_of_pngs(tmp_path, splits, layout):
    tree = write_image_tree(tmp_path / "data" / "cifar10-png", splits)
    assert_loads(tree if layout == "tree" else tree.parent, tree_order(splits))


def test_image_folder_archive_of_jpegs(tmp_path):
    """Like ../shared/data/cifar10-jpeg.tar.gz: one top folder, JPEGs, found from the parent folder."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 150, 32)  # smooth images (no uint8 overflow) survive JPEG almost unchanged
    smooth = {s: ((ramp[None, :, None, None] + ramp[None, None, :, None] / 4
                   + rng.integers(0, 50, (n, 1, 1, 3))).astype(np.uint8), rng.permutation(np.arange(n) % 10))
              for s, n in (("train", 20), ("test", 10))}
    tree = write_image_tree(tmp_path / "build" / "cifar10-jpeg", smooth, ext=".jpg")
    make_tar(tmp_path / "data" / "cifar10-jpeg.tar.gz", tree, shuffle=True)  # order must not matter
    expected = tree_order(smooth)
    for split, train in (("train", True), ("test", False)):
        data = CIFAR10(tmp_path / "data", train=train)
        np.testing.assert_array_equal(data.labels, expected[split][1])
        error = np.abs(data.images.astype(int) - expected[split][0]).mean(axis=(1, 2, 3))
        assert error.max() < 2, f"JPEG round trip differs by {error} on average"


# ---------------------------------------------------------------- where the data is looked for

def test_root_from_environment_and_argument(tmp_path, splits, monkeypatch):
    write_binary_version(tmp_path / "env" / "cifar-10-batches-bin", splits)
    monkeypatch.setenv("MINIMIX_DATA", str(tmp_path / "env"))
    np.testing.assert_array_equal(CIFAR10(train=False).labels, splits["test"][1])
    other = {s: (x[::-1].copy(), y[::-1].copy()) for s, (x, y) in splits.items()}
    write_binary_version(tmp_path / "arg" / "cifar-10-batches-bin", other)
    np.testing.assert_array_equal(CIFAR10(tmp_path / "arg", train=False).labels, other["test"][1])


def test_nothing_found_explains_where_and_how(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        CIFAR10(tmp_path / "empty")
    message = str(info.value)
    for needed in (str(tmp_path / "empty"), "cifar-10-batches-py", "cifar-10-binary.tar.gz",
                   "train/<class>", "download=True", "MINIMIX_DATA"):
        assert needed in message


def test_ambiguous_roots_ask_for_a_choice(tmp_path, splits):
    tree = write_image_tree(tmp_path / "build" / "one", splits)
    make_tar(tmp_path / "two" / "a.tar.gz", tree)
    make_tar(tmp_path / "two" / "b.tar.gz", tree)
    with pytest.raises(ValueError, match="several archives"):
        CIFAR10(tmp_path / "two")
    np.testing.assert_array_equal(CIFAR10(tmp_path / "two" / "b.tar.gz").labels,
                                  tree_order(splits)["train"][1])
    write_image_tree(tmp_path / "build" / "other", splits)
    with pytest.raises(ValueError, match="several image trees"):
        CIFAR10(tmp_path / "build")


# ---------------------------------------------------------------- corrupt and truncated inputs

def _corrupt(tmp_path, splits, case):
    """Write a dataset damaged as ``case`` says; return (root, text the error must contain)."""
    if case in ("truncated-binary", "binary-label-out-of-range"):
        folder = write_binary_version(tmp_path / "cifar-10-batches-bin", splits)
        file = folder / "data_batch_3.bin"
        content = bytearray(file.read_bytes())
        if case == "truncated-binary":
            file.write_bytes(content[:-100])
            return folder, ("data_batch_3.bin", "bytes")
        content[3073] = 10  # label byte of the second record
        file.write_bytes(bytes(content))
        return folder, ("data_batch_3.bin", "label 10")
    if case.startswith("pickle-"):
        folder = write_python_version(tmp_path / "cifar-10-batches-py", splits)
        images, labels = splits["test"]
        bad = {"pickle-label-out-of-range": (planes(images), np.where(np.arange(BATCH) == 1, 11, labels)),
               "pickle-wrong-row-length": (planes(images)[:, :-1], labels),
               "pickle-label-count": (planes(images), labels[:-1])}.get(case)
        content = py2_pickle_batch(*bad) if bad else b"\x80\x02}(garbage"
        (folder / "test_batch").write_bytes(content)
        return folder, ("test_batch", {"pickle-label-out-of-range": "label 11",
                                       "pickle-wrong-row-length": "3072",
                                       "pickle-label-count": f"{BATCH - 1} labels for {BATCH} images",
                                       "pickle-garbage": "not a valid"}[case])
    if case == "missing-batch":
        folder = write_python_version(tmp_path / "cifar-10-batches-py", splits)
        (folder / "data_batch_5").unlink()
        return folder, ("data_batch_5", "missing")
    if case in ("truncated-archive", "not-an-archive"):
        archive = tmp_path / "cifar-10-python.tar.gz"
        make_tar(archive, write_python_version(tmp_path / "d" / "cifar-10-batches-py", splits))
        content = archive.read_bytes()
        archive.write_bytes(content[: len(content) // 2] if case == "truncated-archive"
                            else b"this is not a gzip file" * 10)
        return archive, (str(archive), "tar archive")
    tree = write_image_tree(tmp_path / "tree", splits)
    target = tree / "train" / CLASSES[splits["train"][1][0]] / "0000.png"
    if case == "undecodable-image":
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
        return tree, ("0000.png", "cannot decode")
    if case in ("image-33x32", "image-grayscale"):
        from PIL import Image

        Image.fromarray(np.zeros((32, 33, 3), np.uint8) if case == "image-33x32"
                        else np.zeros((32, 32), np.uint8)).save(target)
        return tree, ("0000.png", "expected a 32x32 RGB image")
    if case == "unknown-class-folder":
        (tree / "test" / "horses").mkdir()
        target.rename(tree / "test" / "horses" / "x.png")
        return tree, ("horses", "unknown class folder")
    assert case == "archive-without-test-split"
    for file in (tree / "test").rglob("*.png"):
        file.unlink()
    return make_tar(tmp_path / "images.tar.gz", tree), ("images.tar.gz", "no images in test/")


CORRUPTIONS = ["truncated-binary", "binary-label-out-of-range", "pickle-label-out-of-range",
               "pickle-wrong-row-length", "pickle-label-count", "pickle-garbage", "missing-batch",
               "truncated-archive", "not-an-archive", "undecodable-image", "image-33x32",
               "image-grayscale", "unknown-class-folder", "archive-without-test-split"]


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_input_raises_an_error_naming_file_and_problem(tmp_path, splits, case):
    root, needed = _corrupt(tmp_path, splits, case)
    with pytest.raises(DatasetError) as info:
        CIFAR10(root)
    for text in needed:
        assert text in str(info.value)


def test_restricted_unpickler_refuses_code_execution(tmp_path, splits):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    payload = pickle.dumps({b"data": Exploit(), b"labels": []}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        restricted_loads(payload)
    folder = write_python_version(tmp_path / "cifar-10-batches-py", splits)
    (folder / "data_batch_2").write_bytes(payload)
    with pytest.raises(DatasetError, match="data_batch_2.*refusing"):
        CIFAR10(folder)
    assert not marker.exists()
    pickle.loads(payload)  # the same bytes with plain pickle would run the command
    assert marker.exists()


# ---------------------------------------------------------------- download

@pytest.fixture
def fake_server(tmp_path, splits, monkeypatch):
    """Point download.URL at a small python-version archive (file://) with its true MD5."""
    archive = make_tar(tmp_path / "server" / "cifar-10-python.tar.gz",
                       write_python_version(tmp_path / "build" / "cifar-10-batches-py", splits))
    monkeypatch.setattr(download, "URL", archive.as_uri())
    monkeypatch.setattr(download, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    return archive


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_extracts(tmp_path, splits, fake_server, monkeypatch):
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError):
        CIFAR10(root)
    assert_loads(root, splits, download=True)
    assert leftovers(root) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    monkeypatch.setenv("MINIMIX_CACHE", str(tmp_path / "cache2"))  # decode again, from the folder
    np.testing.assert_array_equal(CIFAR10(root, download=True).images, splits["train"][0])


def test_download_md5_mismatch_leaves_nothing(tmp_path, fake_server, monkeypatch):
    monkeypatch.setattr(download, "MD5", "0" * 32)
    with pytest.raises(DatasetError, match="MD5"):
        CIFAR10(tmp_path / "root", download=True)
    assert leftovers(tmp_path / "root") == []


def test_interrupted_download_leaves_nothing(tmp_path, fake_server, monkeypatch):
    class DroppedConnection(io.BytesIO):
        headers = {"Content-Length": "1000000"}

        def read(self, size=-1):
            if self.tell() > 100:
                raise ConnectionResetError("connection reset by peer")
            return super().read(min(size, 64))

    monkeypatch.setattr(download, "urlopen", lambda url: DroppedConnection(fake_server.read_bytes()))
    with pytest.raises(ConnectionResetError):
        CIFAR10(tmp_path / "root", download=True)
    assert leftovers(tmp_path / "root") == []


def test_valid_archive_is_not_downloaded_again(tmp_path, splits, fake_server, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(fake_server.read_bytes())
    monkeypatch.setattr(download, "urlopen", lambda url: pytest.fail("downloaded again"))
    download.download_cifar10(root)
    assert_loads(root, splits)


def test_download_needs_a_folder(tmp_path):
    with pytest.raises(ValueError, match="folder to download into"):
        CIFAR10(tmp_path / "missing.tar.gz", download=True)
    assert not (tmp_path / "missing.tar.gz").exists()


def test_archive_escaping_its_folder_is_refused(tmp_path, monkeypatch):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    monkeypatch.setattr(download, "URL", archive.as_uri())
    monkeypatch.setattr(download, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DatasetError, match="cannot extract"):
        CIFAR10(tmp_path / "root", download=True)
    assert not (tmp_path / "escaped").exists()
    assert [p for p in (tmp_path / "root").iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------- cache

def test_second_load_comes_from_the_cache(tmp_path, splits, monkeypatch):
    root = make_tar(tmp_path / "cifar-10-binary.tar.gz",
                    write_binary_version(tmp_path / "d" / "cifar-10-batches-bin", splits))
    first = CIFAR10(root)
    assert leftovers(tmp_path) == ["cache", "cifar-10-binary.tar.gz", "d"]  # nothing beside the data
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4  # images and labels of both splits

    def no_decoding(*args):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(cifar, "read_official", no_decoding)
    for train in (True, False):  # the first load cached both splits
        np.testing.assert_array_equal(CIFAR10(root, train=train).images,
                                      splits["train" if train else "test"][0])
    cached = CIFAR10(root)
    np.testing.assert_array_equal(cached.labels, first.labels)
    cached.images[0] = 0  # cached arrays are writable, but writing never changes the cache
    np.testing.assert_array_equal(CIFAR10(root).images, splits["train"][0])


def test_a_symlinked_path_shares_the_cache_entry_of_its_target(tmp_path, splits, monkeypatch):
    """One key (the real path) for the prefix and the fingerprint: loading the same archive through a
    symbolic link neither decodes again nor evicts the entry of the real path."""
    root = make_tar(tmp_path / "cifar-10-binary.tar.gz",
                    write_binary_version(tmp_path / "d" / "cifar-10-batches-bin", splits))
    link = tmp_path / "link"
    link.mkdir()
    (link / root.name).symlink_to(root)
    CIFAR10(root)
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 6  # images, labels and checksums of both splits

    def no_decoding(*args):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(cifar, "read_official", no_decoding)
    for path in (link / root.name, link, root):
        np.testing.assert_array_equal(CIFAR10(path, train=False).images, splits["test"][0])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries


def test_changed_source_invalidates_the_cache(tmp_path, splits):
    folder = write_binary_version(tmp_path / "cifar-10-batches-bin", splits)
    CIFAR10(folder, train=False)
    changed = splits["test"][0].copy()
    changed[0] = 255 - changed[0]
    records = np.concatenate([splits["test"][1].astype(np.uint8)[:, None], planes(changed)], axis=1)
    file = folder / "test_batch.bin"
    stat = file.stat()
    file.write_bytes(records.tobytes())  # same size; make sure the mtime moves on
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    np.testing.assert_array_equal(CIFAR10(folder, train=False).images, changed)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4, "stale entries are removed"


def test_corrupt_cache_file_is_ignored(tmp_path, splits, monkeypatch):
    folder = write_binary_version(tmp_path / "cifar-10-batches-bin", splits)
    CIFAR10(folder)
    for file in (tmp_path / "cache").glob("*train-images.npy"):
        file.write_bytes(file.read_bytes()[:200])
    with pytest.warns(UserWarning, match="unreadable cache"):
        np.testing.assert_array_equal(CIFAR10(folder).images, splits["train"][0])


# ---------------------------------------------------------------- the real data set

def channel_stats(images: np.ndarray):
    """Per-channel mean and std on the 0..1 scale, from a histogram of the 256 pixel values
    (exact, and without a 1.2 GB float copy of the training set)."""
    values = np.arange(256) / 255.0
    counts = np.zeros((3, 256), np.int64)
    for start in range(0, len(images), 1000):  # chunks that stay in the CPU cache: 4x faster
        chunk = images[start:start + 1000].reshape(-1, 3)
        for c in range(3):
            counts[c] += np.bincount(chunk[:, c], minlength=256)
    mean = counts @ values / counts.sum(axis=1)
    var = counts @ values**2 / counts.sum(axis=1) - mean**2
    return mean, np.sqrt(var)


@pytest.mark.slow
def test_real_cifar10(monkeypatch):
    """The full set from $MINIMIX_DATA: counts per class, shapes, pixel statistics."""
    if not REAL_DATA:
        missing("MINIMIX_DATA is not set; point it at the folder holding CIFAR-10")
    if find_source(Path(REAL_DATA)) is None:
        missing(f"no CIFAR-10 archive or folder found in MINIMIX_DATA={REAL_DATA}")
    if REAL_CACHE:  # the real cache, so that a second run is fast
        monkeypatch.setenv("MINIMIX_CACHE", REAL_CACHE)
    else:
        monkeypatch.delenv("MINIMIX_CACHE")
    train, test = CIFAR10(REAL_DATA, train=True), CIFAR10(REAL_DATA, train=False)
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), [1000] * 10)
    mean, std = channel_stats(train.images)
    # published statistics of the official training set; a JPEG copy lowers the std a little
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=2e-3)
    np.testing.assert_allclose(std, [0.2470, 0.2435, 0.2616], atol=4e-3)
    # the library's constants describe this data (atol covers JPEG vs. official copies)
    np.testing.assert_allclose(CIFAR10_MEAN, mean, atol=1e-3)
    np.testing.assert_allclose(CIFAR10_STD, std, atol=2.5e-3)
    np.testing.assert_allclose(channel_stats(test.images)[0], mean, atol=5e-3)
    start = time.perf_counter()
    CIFAR10(REAL_DATA, train=True)
    assert time.perf_counter() - start < 5.0, "a cached load must not decode again"
