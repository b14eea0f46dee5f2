"""The one error type for dataset files whose content is wrong."""


class DatasetError(ValueError):
    """A dataset file exists but does not hold what its format promises.

    Raised for truncated or corrupt archives, wrong byte counts, labels out of
    range, undecodable images, images that are not 32x32 RGB, unknown class
    folders and checksum mismatches. The message always names the file (and the
    archive member) and says what was expected, so nothing wrong is ever used
    silently.
    """
