"""Neural-network building blocks (``torch.nn`` spelling)."""
from . import functional
from .layers import Dropout, Flatten, Identity, Linear, ModuleList, ParameterList, ReLU, Sequential, Sigmoid, SiLU, Swish, Tanh
from .module import Module, Parameter
from .conv import Conv2d
from .mixconv import GroupedConv2d, MixConv2d, split_channels
from .norm import BatchNorm1d, BatchNorm2d, BatchNormAct2d, GroupNorm, LayerNorm
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .fuse import MixConvBNAct, fuse
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from .activation import ELU, GELU, Hardsigmoid, Hardswish, LeakyReLU, Mish, Softplus
from .squeeze_excite import SqueezeExcite

__all__ = [
    "functional", "Module", "Parameter", "Sequential", "ModuleList", "ParameterList", "Linear",
    "ReLU", "SiLU", "Swish", "Sigmoid", "Tanh", "Identity", "Dropout", "Flatten",
    "Conv2d", "MixConv2d", "GroupedConv2d", "split_channels", "BatchNorm1d", "BatchNorm2d", "BatchNormAct2d", "LayerNorm", "GroupNorm", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "BCEWithLogitsLoss", "fuse", "MixConvBNAct", "AdaptiveAvgPool2d", "SqueezeExcite",
    "LeakyReLU", "ELU", "GELU", "Hardswish", "Hardsigmoid", "Softplus", "Mish",
    "MaxPool2d", "AvgPool2d", "AdaptiveMaxPool2d",
]
