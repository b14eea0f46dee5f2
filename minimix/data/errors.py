"""The one error type for dataset files whose content is wrong."""


class DatasetError(ValueError):
    """A dataset file exists but does not hold what its format promises.

    Raised for truncated or corrupt archives (a tar without its end-of-archive
    marker, a compressed stream that fails its checksum), links inside archives,
    wrong byte counts, labels out of range, undecodable images, images that are
    not 32x32 RGB (checked from the header, before decoding), unknown class
    folders, a folder reached twice through symbolic links, classes without the
    expected number of images, and checksum mismatches. The message always names the file (and the
    archive member) and says what was expected, so nothing wrong is ever used
    silently.
    """
