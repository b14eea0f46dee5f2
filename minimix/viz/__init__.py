"""Receptive fields of convolutional networks: theory, measurement, pictures.

* ``receptive_field(model, input_shape)``: the theoretical field (size ``rf``,
  ``jump``, per MixConv kernel group) of every convolution-like layer;
  ``format_table`` / ``print_receptive_fields`` show it as a table.
* ``effective_receptive_field(model, inputs, layer)``: the measured (gradient)
  field as a 2-D map; ``compute_erf`` also returns where it sits;
  ``erf_summary`` gives the side of the centred squares holding 20/50/99% of it.
* ``plot_erfs``, ``plot_rf_vs_depth``, ``plot_mixconv_kernels``: figures
  (matplotlib is imported only when one is drawn).
"""
from .erf import ERF, compute_erf, effective_receptive_field, erf_summary, mixconv_group_erfs
from .plots import plot_erfs, plot_mixconv_kernels, plot_rf_vs_depth
from .receptive_field import (
    AxisField,
    LayerRF,
    conv_layers,
    format_table,
    layer_field,
    print_receptive_fields,
    receptive_field,
)

__all__ = [
    "receptive_field", "layer_field", "AxisField", "LayerRF", "conv_layers", "format_table", "print_receptive_fields",
    "effective_receptive_field", "compute_erf", "ERF", "erf_summary", "mixconv_group_erfs",
    "plot_erfs", "plot_rf_vs_depth", "plot_mixconv_kernels",
]
