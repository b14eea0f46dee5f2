"""Nothing silently missing or silently wrong in the data (issue 14, items 1 and 13).

Each test writes a small dataset in tmp_path and damages it the way the issue found:

* a tar archive cut exactly at a member boundary, or inside a member's header (plain and
  re-compressed), must be refused, and nothing of it cached;
* every class must have the same number of images, the expected number when one is given
  (``per_class=``), and the message names the split, the classes, found vs expected and the file;
* a ``.tar.gz`` is read to the end of its gzip stream: a flipped CRC byte or a cut tail is an error;
* a symlinked class folder is read like a real one; a link loop or two class folders that are the
  same folder, and links inside an archive, are refused;
* an 8000x8000 PNG is refused from its header, before any pixel is decoded;
* a cache file whose pixels changed is noticed (SHA-256 recorded with the cache) and decoded again.
"""
import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from minimix.data import CIFAR10, CLASSES, DatasetError

PIL = require("PIL.Image", "Pillow writes the test images")

TRAIN, TEST = 2, 1  # images per class in the small trees


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache folder and no $MINIMIX_DATA, so tests never touch the user's files."""
    monkeypatch.setenv("MINIMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIMIX_DATA", raising=False)


def cached_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else []


def write_tree(root: Path, per_class=(("train", TRAIN), ("test", TEST)), skip=()) -> Path:
    """root/{train,test}/<class>/NNNN.png, random pixels; ``skip`` lists (split, class) not written."""
    rng = np.random.default_rng(0)
    for split, n in per_class:
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            if (split, name) in skip:
                continue
            for i in range(n):
                PIL.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root


def tar_bytes(tree: Path, format=tarfile.DEFAULT_FORMAT) -> bytes:
    """An uncompressed tar of ``tree`` (as its top folder), members in sorted order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as tar:
        tar.add(tree, arcname=tree.name)
    return buffer.getvalue()


def member_offsets(content: bytes) -> list[tuple[str, int]]:
    """(name, offset of its header) of each regular file in an uncompressed tar."""
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        return [(m.name, m.offset) for m in tar.getmembers() if m.isfile()]


# ---------------------------------------------------------------- item 1: truncated archives

@pytest.mark.parametrize("compression", ["tar", "tar.gz"])
@pytest.mark.parametrize("cut", ["member-boundary", "inside-header"])
def test_archive_cut_at_a_member_boundary_or_inside_a_header_is_refused(tmp_path, cut, compression):
    """The issue's case: the file ends where a member (of the train split, so both splits still have
    images) begins or inside its header. tarfile treats both as a normal end; we must not."""
    content = tar_bytes(write_tree(tmp_path / "build" / "cifar10"))
    train_members = [(name, offset) for name, offset in member_offsets(content) if "/train/" in name]
    name, offset = train_members[len(train_members) * 3 // 4]  # three quarters into the train split
    cut_content = content[:offset + (100 if cut == "inside-header" else 0)]
    archive = tmp_path / "data" / f"cifar10.{compression}"
    archive.parent.mkdir()
    # a valid gzip stream of a cut tar (what re-compressing a cut tar gives): only the tar is wrong
    archive.write_bytes(gzip.compress(cut_content) if compression == "tar.gz" else cut_content)
    with pytest.raises(DatasetError) as info:
        CIFAR10(archive)
    message = str(info.value)
    assert str(archive) in message and "end-of-archive" in message
    assert cached_files(tmp_path) == [], "a failed decode must never be cached"


COMPRESSORS = {"tar": lambda b: b, "tar.gz": gzip.compress, "tar.bz2": bz2.compress, "tar.xz": lzma.compress}


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
@pytest.mark.parametrize("compression", list(COMPRESSORS))
def test_complete_archive_still_loads(tmp_path, compression, format):
    """Every compression, and long member names (stored in extra pax / GNU headers)."""
    tree = write_tree(tmp_path / "build" / "cifar10")
    for name in CLASSES:
        (tree / "train" / name / "0001.png").rename(tree / "train" / name / ("1" * 150 + ".png"))
    archive = tmp_path / f"cifar10.{compression}"
    archive.write_bytes(COMPRESSORS[compression](tar_bytes(tree, format)))
    data = CIFAR10(archive)
    assert np.bincount(data.labels).tolist() == [TRAIN] * 10
    assert [name for name in cached_files(tmp_path) if name.endswith("-sha256.json")]


@pytest.mark.parametrize("compression", ["tar.bz2", "tar.xz"])
def test_cut_bz2_and_xz_streams_are_refused(tmp_path, compression):
    archive = tmp_path / f"cifar10.{compression}"
    content = COMPRESSORS[compression](tar_bytes(write_tree(tmp_path / "build" / "cifar10")))
    archive.write_bytes(content[:-20])
    with pytest.raises(DatasetError, match=str(archive)):
        CIFAR10(archive)


@pytest.fixture
def good_targz(tmp_path) -> tuple[Path, bytes]:
    archive = tmp_path / "data" / "cifar10.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(gzip.compress(tar_bytes(write_tree(tmp_path / "build" / "cifar10"))))
    return archive, archive.read_bytes()


@pytest.mark.parametrize("damage", ["crc-byte-flipped", "size-byte-flipped", "tail-cut"])
def test_targz_is_read_to_the_end_of_its_gzip_stream(good_targz, tmp_path, damage):
    """The last 8 bytes of a gzip stream are the CRC-32 and the length of the data: only reading to
    the end checks them. The tar inside is complete, so stopping at its end-of-archive marker
    (as tarfile does) would miss every one of these."""
    archive, content = good_targz
    content = bytearray(content)
    if damage == "crc-byte-flipped":
        content[-8] ^= 0x01
    elif damage == "size-byte-flipped":
        content[-2] ^= 0x01
    else:
        content = content[:-6]
    archive.write_bytes(bytes(content))
    with pytest.raises(DatasetError) as info:
        CIFAR10(archive)
    assert str(archive) in str(info.value)
    assert cached_files(tmp_path) == []


# ---------------------------------------------------------------- item 1: counts per class

def test_a_class_short_of_images_is_refused_naming_split_classes_counts_and_file(tmp_path):
    tree = write_tree(tmp_path / "tree", per_class=(("train", 3), ("test", TEST)),
                      skip={("train", "dog"), ("train", "frog")})
    (tree / "train" / "cat" / "0002.png").unlink()
    with pytest.raises(DatasetError) as info:
        CIFAR10(tree)
    message = str(info.value)
    for needed in (str(tree), "train", "cat (2 of 3)", "dog (0 of 3)", "frog (0 of 3)",
                   "23 images found, 30 expected"):
        assert needed in message, f"{needed!r} not in {message!r}"
    assert "airplane" not in message  # only the classes that are short
    assert cached_files(tmp_path) == []


def test_expected_counts_are_a_parameter(tmp_path):
    """The default asks for equal counts (the official 5,000/1,000 at most); ``per_class`` asks for
    exact counts, e.g. ``minimix.data.OFFICIAL_PER_CLASS`` for the full CIFAR-10."""
    from minimix.data import OFFICIAL_PER_CLASS

    assert OFFICIAL_PER_CLASS == {"train": 5000, "test": 1000}
    tree = write_tree(tmp_path / "tree")
    assert len(CIFAR10(tree, per_class={"train": TRAIN, "test": TEST})) == 10 * TRAIN
    with pytest.raises(DatasetError, match=r"test split .*airplane \(1 of 3\)"):
        CIFAR10(tree, train=False, per_class={"train": TRAIN, "test": 3})
    with pytest.raises(DatasetError, match=r"train split .*airplane \(2 of 5,000\).*20 images found, "
                                           r"50,000 expected"):
        CIFAR10(tree, per_class=OFFICIAL_PER_CLASS)  # the cached decode is checked too
    with pytest.raises(ValueError, match="per_class"):
        CIFAR10(tree, per_class={"train": 0})


def test_the_official_formats_are_counted_too(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.arange(10, dtype=np.uint8)
        if name == "data_batch_4":
            labels[3] = 4  # one cat became a deer
        pixels = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
        (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], pixels], 1).tobytes())
    with pytest.raises(DatasetError, match=r"cifar-10-batches-bin: the train split .*cat \(4 of 5\), deer \(6 of 5\)"):
        CIFAR10(folder)


def test_limit_still_works_after_the_check(tmp_path):
    """--limit takes a class-balanced subset after loading (minimix/cli/train.py), so the count check
    sees the whole set and the subset may be uneven."""
    from minimix.training.recipe import balanced_subset

    data = CIFAR10(write_tree(tmp_path / "tree", per_class=(("train", 3), ("test", TEST))))
    _, labels = balanced_subset(data.images, data.labels, 25)
    assert np.bincount(labels, minlength=10).tolist() == [3] * 5 + [2] * 5


# ---------------------------------------------------------------- item 13: symbolic links

def test_symlinked_class_folder_is_followed(tmp_path):
    tree = write_tree(tmp_path / "tree", skip={("train", "dog")})
    elsewhere = write_tree(tmp_path / "elsewhere")  # the dog images live outside the tree
    (tree / "train" / "dog").rmdir()
    (tree / "train" / "dog").symlink_to(elsewhere / "train" / "dog", target_is_directory=True)
    data = CIFAR10(tree)
    assert np.bincount(data.labels, minlength=10).tolist() == [TRAIN] * 10
    dog = CLASSES.index("dog")
    expected = np.stack([np.asarray(PIL.open(p)) for p in sorted((elsewhere / "train" / "dog").iterdir())])
    np.testing.assert_array_equal(data.images[data.labels == dog], expected)


@pytest.mark.parametrize("link", ["same-folder-twice", "loop"])
def test_symlinks_that_would_count_twice_or_loop_are_refused(tmp_path, link):
    tree = write_tree(tmp_path / "tree")
    if link == "same-folder-twice":  # dog -> cat: the cat images would count as dogs too
        for file in (tree / "train" / "dog").iterdir():
            file.unlink()
        (tree / "train" / "dog").rmdir()
        (tree / "train" / "dog").symlink_to(tree / "train" / "cat", target_is_directory=True)
    else:
        (tree / "train" / "cat" / "again").symlink_to(tree / "train", target_is_directory=True)
    with pytest.raises(DatasetError) as info:
        CIFAR10(tree)
    assert "same folder" in str(info.value) and str(tree / "train") in str(info.value)


def test_links_inside_an_archive_are_refused(tmp_path):
    """tarfile's stream reader cannot follow a link, so the files behind it would be missing."""
    tree = write_tree(tmp_path / "tree", skip={("train", "dog")})
    (tree / "train" / "dog").rmdir()
    (tree / "train" / "dog").symlink_to(write_tree(tmp_path / "elsewhere") / "train" / "dog")
    archive = tmp_path / "cifar10.tar"
    archive.write_bytes(tar_bytes(tree))
    with pytest.raises(DatasetError) as info:
        CIFAR10(archive)
    assert f"{archive}:tree/train/dog" in str(info.value) and "link" in str(info.value)


# ---------------------------------------------------------------- item 13: huge images

def big_png(width: int, height: int) -> bytes:
    """A valid all-black RGB PNG of any size, written in well under a second: one row compressed with a
    full flush (which resets the compressor, so every further row compresses to the same bytes)."""
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    compressor = zlib.compressobj(9)
    first = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == again  # the same deflate block after the 2-byte zlib header
    adler = 1
    for _ in range(height):
        adler = zlib.adler32(row, adler)
    data = first + again * (height - 1) + b"\x03\x00" + struct.pack(">I", adler)  # empty final block

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_a_huge_png_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    from minimix.data.image_folder import decode_images

    small = big_png(32, 32)
    assert np.asarray(PIL.open(io.BytesIO(small))).shape == (32, 32, 3)  # the writer makes valid PNGs
    huge = big_png(8000, 8000)
    decoded = []
    real_load = ImageFile.ImageFile.load

    def load(image):
        decoded.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    with pytest.raises(DatasetError) as info:
        decode_images([small, huge], ["small.png", "tree/train/cat/huge.png"])
    assert "tree/train/cat/huge.png" in str(info.value) and "8000x8000" in str(info.value)
    assert (32, 32) in decoded and (8000, 8000) not in decoded, \
        "the 8000x8000 image was decoded before its size was checked"

    tree = write_tree(tmp_path / "tree")
    (tree / "train" / "cat" / "0001.png").write_bytes(huge)
    with pytest.raises(DatasetError, match=r"cat/0001.png: image is RGB 8000x8000, expected a 32x32 RGB"):
        CIFAR10(tree)


# ---------------------------------------------------------------- item 13: cache checksums

def test_cache_whose_pixels_changed_is_noticed_and_decoded_again(tmp_path):
    tree = write_tree(tmp_path / "tree")
    original = CIFAR10(tree).images.copy()
    [images_file] = (tmp_path / "cache").glob("*-train-images.npy")
    content = bytearray(images_file.read_bytes())
    content[-1] ^= 0xFF  # one pixel of the last image; the file keeps its size and stays a valid .npy
    images_file.write_bytes(bytes(content))
    with pytest.warns(UserWarning, match=r"SHA-256.*decoding .* again"):
        reloaded = CIFAR10(tree).images
    np.testing.assert_array_equal(reloaded, original)
    np.testing.assert_array_equal(CIFAR10(tree).images, original)  # the rewritten cache is good again


def test_cache_without_its_checksum_is_not_used(tmp_path):
    tree = write_tree(tmp_path / "tree")
    original = CIFAR10(tree).images.copy()
    checksums = list((tmp_path / "cache").glob("*.json"))
    assert checksums, "the cache records a checksum file beside its arrays"
    for file in checksums:
        file.unlink()
    for file in (tmp_path / "cache").glob("*-train-images.npy"):
        np.save(file, np.zeros_like(original))
    np.testing.assert_array_equal(CIFAR10(tree).images, original)
