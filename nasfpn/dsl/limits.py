"""Limits on what a DSL file may say: far beyond any published neck, well inside what a machine
can build and hold. Each is checked by `validate` with the field it concerns, before anything
is allocated; a file over one is told which limit (by this name) it hit.

The YAML reader's own limits (file size, nesting, values after alias expansion) are in
`yaml_reader.py`; these are the limits of the fields.
"""

MAX_CHANNELS = 2048          # neck width (NAS-FPN: 256, its widest models 384)
MAX_REPEATS = 32             # stacked cells (NAS-FPN: 7, M2Det: 8 TUMs)
MAX_NODES = 64               # nodes of a cell, and of the stem (NAS-FPN: 7, BiFPN: 8, M2Det: 40)
MAX_OPS = 16                 # ops in one `post` or `lateral` list
MAX_FEEDBACK_STEPS = 8       # DetectoRS' recursive pyramid (the paper: 2)
MAX_DILATION = 64            # an ASPP dilation (DetectoRS: 1, 3, 6)
MAX_LIST = 16                # values of `aspp_dilations` or a block's `ratios`
# Weights of the neck, bounded from above as 9 x channels^2 per conv op and per input edge of
# every node of every stack; NAS-FPN's 7 stacks at 256 channels: 87 M bound, 30 M actual.
MAX_NECK_WEIGHT_BOUND = 4_000_000_000
