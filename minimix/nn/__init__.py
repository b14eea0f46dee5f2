"""Neural-network building blocks (``torch.nn`` spelling)."""
from . import functional
from .layers import Dropout, Flatten, Identity, Linear, ModuleList, ReLU, Sequential, Sigmoid, SiLU, Swish, Tanh
from .module import Module, Parameter

__all__ = [
    "functional", "Module", "Parameter", "Sequential", "ModuleList", "Linear",
    "ReLU", "SiLU", "Swish", "Sigmoid", "Tanh", "Identity", "Dropout", "Flatten",
]
