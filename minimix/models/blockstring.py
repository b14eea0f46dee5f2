"""MixNet block strings: the one-line notation the reference implementation uses for a group of blocks.

The TensorFlow reference (tensorflow/tpu ``mixnet/mixnet_builder.py``) writes each group of
identical blocks as a string such as::

    r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw

read field by field (fields are separated by ``_``; a field is a key followed by its value):

========  ==========================================  ====================
field     meaning                                     example above
========  ==========================================  ====================
``r``     repeats: how many blocks the group builds   3 blocks
``k``     depthwise kernel sizes, one per channel      MixConv with 3x3
          group of the MixConv (``.``-separated)       and 5x5 groups
``a``     expansion 1x1 conv: one entry per group      2 groups
``p``     projection 1x1 conv: one entry per group     2 groups
``s``     stride, two digits (rows, columns)           1 (no downsampling)
``e``     expansion ratio: hidden = in x e             40 -> 240 channels
``i/o``   input / output channels (before width        40 -> 40
          scaling)
``se``    squeeze-excite ratio (of the INPUT width)    int(40 x 0.5) = 20
``sw``    flag: swish (SiLU) instead of ReLU           SiLU
``noskip`` flag: no residual connection even when       (absent)
          the shapes allow one
========  ==========================================  ====================

Only the first block of a group uses ``s`` and ``i``; the repeats run ``o -> o`` at stride 1.
``decode_block_string`` turns a string into a :class:`BlockArgs` and ``encode_block_string``
turns it back (``encode(decode(s)) == s`` for every string in the reference tables).
``round_filters`` is the reference's width-multiplier rounding.
"""
from __future__ import annotations

import dataclasses
import re

FIELDS = {
    "r": "repeats",
    "k": "depthwise kernel sizes",
    "a": "expansion conv groups (kernel size per group)",
    "p": "projection conv groups (kernel size per group)",
    "s": "stride",
    "e": "expansion ratio",
    "i": "input channels",
    "o": "output channels",
    "se": "squeeze-excite ratio",
}
FLAGS = {"sw": "swish activation", "noskip": "no residual connection"}
REQUIRED = ("r", "k", "a", "p", "s", "e", "i", "o")


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One decoded block string (channels are the UNscaled table values until ``scaled``)."""

    repeats: int
    kernel_sizes: tuple
    expand_kernel_sizes: tuple
    project_kernel_sizes: tuple
    stride: tuple
    expand_ratio: int
    in_channels: int
    out_channels: int
    se_ratio: float | None = None
    swish: bool = False
    id_skip: bool = True

    @property
    def expand_groups(self) -> int:
        """How many kernel groups the expansion (1x1) convolution is split into."""
        return len(self.expand_kernel_sizes)

    @property
    def project_groups(self) -> int:
        """How many kernel groups the projection (1x1) convolution is split into."""
        return len(self.project_kernel_sizes)

    def scaled(self, width_multiplier: float, divisor: int = 8) -> "BlockArgs":
        """The same block with in/out channels scaled by ``round_filters``."""
        return dataclasses.replace(
            self,
            in_channels=round_filters(self.in_channels, width_multiplier, divisor),
            out_channels=round_filters(self.out_channels, width_multiplier, divisor),
        )

    def replace(self, **changes) -> "BlockArgs":
        """A copy with some fields changed, e.g. ``args.replace(kernel_sizes=(3,))``."""
        return dataclasses.replace(self, **changes)

    def __str__(self):
        return encode_block_string(self)


def round_filters(channels: int, width_multiplier: float = 1.0, divisor: int = 8, min_depth: int | None = None) -> int:
    """Scale a channel count by the width multiplier and round it as the reference does.

    ``c' = max(min_depth, floor((c*w + divisor/2) / divisor) * divisor)``: the nearest multiple
    of ``divisor`` (8, which suits vector hardware), never below ``min_depth`` (default: the
    divisor) -- and if rounding went down by more than 10 % (``c' < 0.9 c w``) add one more
    ``divisor``. Examples at w = 0.25: 16 -> 8, 40 -> 16 (10 rounds to 8 < 9, so 16), 200 -> 48.
    """
    if width_multiplier <= 0:
        raise ValueError(f"round_filters: width_multiplier must be > 0, got {width_multiplier}")
    min_depth = min_depth or divisor
    scaled = channels * width_multiplier
    rounded = max(min_depth, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _bad(block_string, field, why):
    name = FIELDS.get(field, FLAGS.get(field, "unknown field"))
    return ValueError(f"block string {block_string!r}: field {field!r} ({name}): {why}")


def _int_list(block_string, field, text, odd=False):
    if not re.fullmatch(r"\d+(\.\d+)*", text):
        raise _bad(block_string, field, f"expected integers separated by '.', e.g. '3.5.7', got {text!r}")
    sizes = tuple(int(t) for t in text.split("."))
    if any(k < 1 for k in sizes) or (odd and any(k % 2 == 0 for k in sizes)):
        kind = "odd positive" if odd else "positive"
        raise _bad(block_string, field, f"kernel sizes must be {kind} integers, got {sizes}")
    return sizes


def _positive_int(block_string, field, text):
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise _bad(block_string, field, f"expected a positive integer, got {text!r}")
    return int(text)


def decode_block_string(block_string: str) -> BlockArgs:
    """Parse one block string into :class:`BlockArgs`; malformed strings raise ``ValueError``.

    The error quotes the whole string and names the offending field.
    """
    if not isinstance(block_string, str) or not block_string:
        raise ValueError(f"block string must be a non-empty str, got {block_string!r}")
    values, flags = {}, set()
    for token in block_string.split("_"):
        if token in FLAGS:
            if token in flags:
                raise _bad(block_string, token, "given twice")
            flags.add(token)
            continue
        match = re.fullmatch(r"([a-z]+)(.*)", token)
        if match is None or match.group(1) not in FIELDS:
            key = match.group(1) if match else token
            known = ", ".join(list(FIELDS) + list(FLAGS))
            raise ValueError(f"block string {block_string!r}: unknown field {key!r} in {token!r} (known: {known})")
        key, value = match.groups()
        if key in values:
            raise _bad(block_string, key, "given twice")
        if not value:
            raise _bad(block_string, key, "has no value")
        values[key] = value
    for key in REQUIRED:
        if key not in values:
            raise _bad(block_string, key, "missing")

    stride_text = values["s"]
    if not re.fullmatch(r"\d{1,2}", stride_text):
        raise _bad(block_string, "s", f"expected one or two digits (e.g. 's2' or 's22'), got {stride_text!r}")
    stride = tuple(int(c) for c in stride_text) * (3 - len(stride_text))  # 's2' means (2, 2)
    if 0 in stride:
        raise _bad(block_string, "s", f"strides must be >= 1, got {stride}")

    se_ratio = None
    if "se" in values:
        try:
            se_ratio = float(values["se"])
        except ValueError:
            raise _bad(block_string, "se", f"expected a number, got {values['se']!r}") from None
        if not 0.0 < se_ratio <= 1.0:
            raise _bad(block_string, "se", f"ratio must be in (0, 1], got {se_ratio}")

    return BlockArgs(
        repeats=_positive_int(block_string, "r", values["r"]),
        kernel_sizes=_int_list(block_string, "k", values["k"], odd=True),
        expand_kernel_sizes=_int_list(block_string, "a", values["a"]),
        project_kernel_sizes=_int_list(block_string, "p", values["p"]),
        stride=stride,
        expand_ratio=_positive_int(block_string, "e", values["e"]),
        in_channels=_positive_int(block_string, "i", values["i"]),
        out_channels=_positive_int(block_string, "o", values["o"]),
        se_ratio=se_ratio,
        swish="sw" in flags,
        id_skip="noskip" not in flags,
    )


def encode_block_string(args: BlockArgs) -> str:
    """The block string of ``args`` (the inverse of :func:`decode_block_string`)."""

    def sizes(ks):
        return ".".join(str(k) for k in ks)

    fields = [
        f"r{args.repeats}",
        f"k{sizes(args.kernel_sizes)}",
        f"a{sizes(args.expand_kernel_sizes)}",
        f"p{sizes(args.project_kernel_sizes)}",
        f"s{args.stride[0]}{args.stride[1]}",
        f"e{args.expand_ratio}",
        f"i{args.in_channels}",
        f"o{args.out_channels}",
    ]
    if args.se_ratio:
        fields.append(f"se{args.se_ratio}")
    if not args.id_skip:
        fields.append("noskip")
    if args.swish:
        fields.append("sw")
    return "_".join(fields)


def decode_stages(stages) -> list:
    """Decode a table: a list of stages, each a list of block strings (or BlockArgs, kept as is)."""
    return [
        [a if isinstance(a, BlockArgs) else decode_block_string(a) for a in stage]
        for stage in stages
    ]


def encode_stages(stages) -> list:
    """Encode a table (a list of stages, each a list of BlockArgs) as block strings: the inverse of
    :func:`decode_stages`."""
    return [[encode_block_string(a) for a in stage] for stage in stages]
