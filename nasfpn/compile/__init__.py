"""Genotype -> nn.Module."""

from .feedback import FeedbackBackbone, run_pyramid
from .named import NamedNeck
from .neck import Neck, NeckBuildError, build_neck
from .plan import Plan, make_plan

__all__ = ["FeedbackBackbone", "NamedNeck", "Neck", "NeckBuildError", "Plan", "build_neck",
           "make_plan", "run_pyramid"]
