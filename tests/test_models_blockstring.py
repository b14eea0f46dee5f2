"""Block strings: decoding, encoding (round trips over the reference tables), errors, round_filters."""
import pytest

from minimix.models import MIXNET_M, MIXNET_S, BlockArgs, decode_block_string, encode_block_string, round_filters

TABLE_STRINGS = sorted({s for table in (MIXNET_S, MIXNET_M) for stage in table for s in stage})


def test_decode_example_fields():
    a = decode_block_string("r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw")
    assert a == BlockArgs(repeats=3, kernel_sizes=(3, 5), expand_kernel_sizes=(1, 1), project_kernel_sizes=(1, 1),
                          stride=(1, 1), expand_ratio=6, in_channels=40, out_channels=40, se_ratio=0.5,
                          swish=True, id_skip=True)
    assert (a.expand_groups, a.project_groups) == (2, 2)


def test_decode_defaults_and_flags():
    a = decode_block_string("r1_k3_a1_p1_s2_e1_i16_o16_noskip")
    assert a.stride == (2, 2)  # one digit means both directions
    assert a.se_ratio is None and a.swish is False and a.id_skip is False


@pytest.mark.parametrize("block_string", TABLE_STRINGS)
def test_round_trip_table_strings(block_string):
    args = decode_block_string(block_string)
    assert encode_block_string(args) == block_string
    assert decode_block_string(encode_block_string(args)) == args
    assert str(args) == block_string


def test_round_trip_from_args():
    args = BlockArgs(2, (3, 5, 7, 9), (1,), (1, 1), (2, 2), 3, 24, 40, 0.25, False, False)
    assert decode_block_string(encode_block_string(args)) == args


@pytest.mark.parametrize("block_string, field", [
    ("r1_k3_a1_p1_s11_e6_i16_o24_x7", "'x'"),          # unknown field
    ("r1_k3_a1_p1_s11_e6_i16_o24_swish", "'swish'"),   # unknown flag
    ("r1_a1_p1_s11_e6_i16_o24", "'k'"),                # missing kernel list
    ("r1_k_a1_p1_s11_e6_i16_o24", "'k'"),              # empty kernel list
    ("r1_k3.4_a1_p1_s11_e6_i16_o24", "'k'"),           # even kernel
    ("r1_k3..5_a1_p1_s11_e6_i16_o24", "'k'"),          # malformed list
    ("r1_k3_a1_p1_s123_e6_i16_o24", "'s'"),            # three stride digits
    ("r1_k3_a1_p1_s2x_e6_i16_o24", "'s'"),             # not digits
    ("r1_k3_a1_p1_e6_i16_o24", "'s'"),                 # missing stride
    ("r1_k3_a1_p1_s11_e6_i16", "'o'"),                 # missing output channels
    ("r0_k3_a1_p1_s11_e6_i16_o24", "'r'"),             # zero repeats
    ("r1_k3_a1_p1_s11_e6_i16_o24_se1.5", "'se'"),      # ratio out of range
    ("r1_k3_a1_p1_s11_e6_i16_o24_se0.5x", "'se'"),     # not a number
    ("r1_k3_a1_p1_s11_e6_e3_i16_o24", "'e'"),          # given twice
])
def test_malformed_strings_name_the_field(block_string, field):
    with pytest.raises(ValueError) as info:
        decode_block_string(block_string)
    message = str(info.value)
    assert repr(block_string) in message, message
    assert field in message, message


def test_round_filters_reference_rule():
    # nearest multiple of 8, at least 8, and never more than 10% below the scaled value
    assert [round_filters(c, 1.0) for c in (16, 24, 40, 200)] == [16, 24, 40, 200]
    assert round_filters(16, 0.25) == 8      # 4 -> at least the divisor
    assert round_filters(40, 0.25) == 16     # 10 -> 8 is < 9 (90%), so one more step
    assert round_filters(120, 0.5) == 64     # 60 -> 64 (nearest)
    assert round_filters(24, 1.3) == 32      # 31.2 -> 32
    assert round_filters(200, 1.3) == 264    # 260 -> 264 (nearest of 256/264)
    for c in range(8, 400, 4):
        for w in (0.25, 0.5, 0.75, 1.3, 2.0):
            r = round_filters(c, w)
            assert r % 8 == 0 and r >= 8 and r >= 0.9 * c * w
    with pytest.raises(ValueError, match="width_multiplier"):
        round_filters(16, 0.0)
