"""nasfpn: neural architecture search over feature-pyramid necks.

    import nasfpn
    g = nasfpn.load("nasfpn")                       # a zoo name or a YAML path
    neck = nasfpn.build_neck(g, in_channels=[128, 256, 512], out_channels=256)
    p3, p4, p5, p6, p7 = neck([c3, c4, c5])
"""

from . import ops  # noqa: F401  (registers every op and its DSL word before anything is parsed)
from ._version import __version__
from .compile import NamedNeck, Neck, NeckBuildError, build_neck, make_plan, run_pyramid
from .dsl import DSLError, Genotype, SearchSpace, from_dict, from_yaml, load, load_space, read, to_yaml, zoo_names

__all__ = ["__version__", "DSLError", "Genotype", "NamedNeck", "Neck", "NeckBuildError", "SearchSpace",
           "build_neck", "from_dict", "from_yaml", "load", "load_space", "make_plan", "read",
           "run_pyramid", "to_yaml", "zoo_names"]
