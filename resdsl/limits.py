"""Limits that keep a spec from asking for something absurd.

(The accepted ranges of primitive-layer arguments live with the primitives, in the op
registry: :data:`resdsl.primitives.RANGES` and each entry's parameters.)

They are checked while the spec is elaborated, before anything large is built, so a
typo like ``conv(6400000, 3)`` or ``stage(basic, 10**9)`` gets a diagnostic instead of
an allocation. The numbers sit far above every published ResNet (ResNet-1202 has 200
blocks a stage; the widest layer of any shipped spec has 2,048 channels) and far below
what would exhaust a workstation.
"""

from __future__ import annotations

#: Input tensors: channels, and height/width.
MAX_INPUT_CHANNELS = 4_096
MAX_INPUT_SIZE = 16_384

#: Blocks in one stage, items in one `range`/list, iterations of one `for`.
MAX_REPEAT = 10_000
#: Primitive ops in one network (ResNet-1202 has 4,208); keeps elaboration under a second or two.
MAX_OPS = 30_000
#: Nested definition instances (network → stage → block → shortcut is 4).
MAX_NESTING = 32
#: Parts of one layer's full path (``layer1.0.downsample.0`` has 4; timm's deepest, 6):
#: back ends walk a path part by part, and torch nests a module per part.
MAX_PATH_DEPTH = 64
#: Largest integer an expression may produce.
MAX_INT = 2**53
#: Nested brackets in one expression (deeper ones are refused before parsing).
MAX_BRACKET_DEPTH = 100
#: Nested syntax (operator chains, conditionals, lists) in the parsed tree; deeper trees are
#: refused before they are walked (`1 ** 1 ** …` 600 times would exhaust Python's stack).
MAX_TREE_DEPTH = 200
#: Characters in one string value (`s = s + s` doubles it).
MAX_STRING = 10_000
#: Evaluation steps for one load: expressions, statements, loop iterations and definition
#: instances together (the largest shipped spec, ResNet-1202, takes 46,000).
MAX_STEPS = 1_000_000
#: Nested imports.
MAX_IMPORT_DEPTH = 32
#: Size of one spec file.
MAX_SOURCE_BYTES = 1_000_000
#: Tokens in one spec file (names, numbers, operators; comments and strings count once). The
#: parser takes 20–90 µs a token, so this keeps parsing under a few seconds; the standard
#: library has about 2,500.
MAX_TOKENS = 50_000

#: Budgets a network must fit unless the user passes --allow-large (``allow_large=True``):
#: weights (wide_resnet101_2 has 127 M) and the float32 activations of one sample, summed
#: over all layers, as a training-memory estimate (ResNet-50 at 224×224: 0.14 GiB).
MAX_PARAMS = 1_000_000_000
MAX_ACTIVATION_BYTES = 32 * 2**30
