"""The built-in primitives, one entry each (see :mod:`resdsl.primitives`).

The order is the registry's: it is the order of the language reference, and the order
in which a generated file lists the helpers it needs.
"""

from __future__ import annotations

from ..primitives import PRIMITIVES
from .activation import ACTIVATIONS, ELU, GROUP_SOFTMAX, LEAKY_RELU
from .conv import CHANNEL_CONV, CONV, LINEAR, STD_CONV
from .dataflow import CONCAT, DROP_PATH, DROPOUT, FLATTEN, IDENTITY, PAD, SPLIT, ZEROPAD
from .elementwise import ADD, DIVIDE, FUNCTIONS, MULTIPLY, REDUCTIONS, SUBTRACT
from .norm import BATCHNORM, GROUPNORM, LAYERNORM
from .params import CONV_WITH, PARAM
from .pool import AVGPOOL, BLURPOOL, GLOBAL_AVGPOOL, MAXPOOL
from .tensor import TENSOR_OPS

BUILTINS = (CONV, BATCHNORM, *ACTIVATIONS, LEAKY_RELU, MAXPOOL, AVGPOOL, GLOBAL_AVGPOOL, FLATTEN, LINEAR,
            DROPOUT, ZEROPAD, DROP_PATH, IDENTITY, ADD, MULTIPLY,
            # added with issue 10
            GROUPNORM, LAYERNORM, STD_CONV, CHANNEL_CONV, BLURPOOL, CONCAT, SPLIT, SUBTRACT, GROUP_SOFTMAX, PAD,
            # added with issue 22
            ELU, DIVIDE, *REDUCTIONS, *FUNCTIONS, PARAM, CONV_WITH,
            # tensor ops of any rank (issue 22)
            *TENSOR_OPS)

for _prim in BUILTINS:
    PRIMITIVES.add(_prim)
