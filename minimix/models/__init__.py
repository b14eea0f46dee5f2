"""MixNet models: block strings, blocks, the S/M/L/CIFAR builders, summary, timm checkpoint interop.

    import minimix as mm
    model = mm.models.mixnet_cifar()          # 815,388 parameters
    mm.models.summary(model, (3, 32, 32))     # per-layer table, ~25.9 M MACs per image
"""
from .blocks import DepthwiseSeparable, InvertedResidual, make_block
from .blockstring import (
    BlockArgs,
    decode_block_string,
    decode_stages,
    encode_block_string,
    encode_stages,
    round_filters,
)
from .init import init_mixnet_weights
from .mixnet import MIXNET_M, MIXNET_S, MODELS, MixNet, mixnet_cifar, mixnet_l, mixnet_m, mixnet_s
from .summary import LayerRow, Summary, summary
from .timm import (
    StateDictMismatchError,
    load_timm_checkpoint,
    load_timm_state_dict,
    read_checkpoint,
    timm_key_map,
    to_timm_state_dict,
)

__all__ = [
    "BlockArgs", "decode_block_string", "encode_block_string", "decode_stages", "encode_stages", "round_filters",
    "DepthwiseSeparable", "InvertedResidual", "make_block", "init_mixnet_weights",
    "MixNet", "MIXNET_S", "MIXNET_M", "MODELS", "mixnet_s", "mixnet_m", "mixnet_l", "mixnet_cifar",
    "summary", "Summary", "LayerRow",
    "load_timm_state_dict", "load_timm_checkpoint", "read_checkpoint", "to_timm_state_dict", "timm_key_map",
    "StateDictMismatchError",
]
