"""The op registry: every combine op, fusion weighting, resampling, post-op, extra level, named
block, aggregation and feedback fusion is one `Op` entry, registered next to its module class.

An entry says everything the rest of nasfpn needs about its op:
- its DSL word and meaning (declared to `nasfpn.dsl.vocab`, so validation knows exactly the ops
  the compiler can build) and how many inputs a node using it may have;
- how to build it: `make(*args, **kwargs)` with the arguments `args(site)` computes from where the
  op sits (`Site`); the compiler builds the module this way and the standalone export writes the
  same call as source (`call_source`), so the two cannot drift apart;
- the source the standalone export copies (`make` itself when it is nasfpn's, plus `needs`);
- its label in cell drawings and its pass-through-init rule (`init`, for convs that are not plain
  channel-preserving ones).

Adding an op is one `register(Op(...))` beside its class, plus its test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from torch import nn

from ..dsl import vocab
from ..dsl.vocab import Arity

KINDS = tuple(vocab.TABLES)


class Source(str):
    """A value that is a name in generated code (`width`, `in_channels[0]`): repr is the name."""

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Site:
    """Where an op is built: what its arguments are computed from. Channel fields may be
    `Source` names when the standalone export writes the call as code."""

    channels: Any = 0                 # the neck width (the op's output width)
    in_channels: Any = None           # width of what comes in, where it may differ (post-ops, extras)
    n_inputs: int = 1
    coarse: int = 0                   # global attention: which of 2 inputs is the coarser
    norm_follows: bool = False        # a conv directly followed by a norm needs no bias
    fusion: str = "none"              # the node's fusion weighting (for combine 'sum')
    factor: int = 1                   # downsampling factor (2^levels)
    relu_first: bool = False          # extras: a ReLU before the op (RetinaNet's P7)
    params: tuple = ()                # a block's (key, value) pairs
    n_levels: int = 0                 # aggregation: pyramid levels
    repeats: int = 1                  # aggregation: stacks

    @property
    def param_dict(self) -> dict:
        return dict(self.params)


Args = Callable[[Site], tuple[tuple, dict]]


def no_args(site: Site) -> tuple[tuple, dict]:
    return (), {}


@dataclass(frozen=True)
class Op:
    kind: str                                  # one of KINDS
    name: str                                  # the DSL word
    about: str                                 # one line, shown in errors and docs
    make: Callable[..., nn.Module]             # class (or function) that builds the module
    args: Args = no_args                       # site -> (positional, keyword) arguments of make
    label: str = ""                            # drawing label (default: the name)
    arity: Arity = field(default_factory=Arity)
    role: str | None = None                    # post-ops: "conv" sets the width, "norm" drops a bias
    params: dict = field(default_factory=dict)  # blocks: {param: (type, default, about)}
    needs: tuple = ()                          # other classes/functions the exported source uses
    init: Callable[[nn.Module], dict] | None = None  # module -> {conv: pass-through start weight}
    select: Callable[[Site], "Op"] | None = None     # ops that delegate to another entry by site
    # whether swapping a node's inputs leaves the function class unchanged, given their levels
    # (graph identity: a symmetric op's inputs are hashed as a set)
    symmetric: Callable[[list[int]], bool] = lambda levels: True

    def resolve(self, site: Site) -> "Op":
        """The entry that actually builds at `site` (combine 'sum' builds its fusion)."""
        return self.select(site).resolve(site) if self.select else self

    def build(self, site: Site) -> nn.Module:
        op = self.resolve(site)
        positional, keywords = op.args(site)
        return op.make(*positional, **keywords)

    def call_source(self, site: Site) -> str:
        """The Python expression that builds the same module as `build(site)`."""
        op = self.resolve(site)
        positional, keywords = op.args(site)
        items = [repr(a) for a in positional] + [f"{k}={v!r}" for k, v in keywords.items()]
        return f"{exported_name(op.make)}({', '.join(items)})"

    def sources(self, site: Site) -> list:
        """The nasfpn classes and functions the exported call needs, dependencies first."""
        op = self.resolve(site)
        own = [op.make] if is_ours(op.make) else []
        return [*op.needs, *own]


_REGISTRY: dict[tuple[str, str], Op] = {}


def register(op: Op) -> Op:
    if op.kind not in KINDS:
        raise ValueError(f"unknown op kind {op.kind!r} (expected one of {', '.join(KINDS)})")
    if (op.kind, op.name) in _REGISTRY:
        raise ValueError(f"{op.kind} op {op.name!r} is registered twice")
    if not op.label:
        op = replace(op, label=op.name)
    _REGISTRY[(op.kind, op.name)] = op
    vocab.declare(op.kind, op.name, op.about, op.arity, op.role, op.params)
    return op


def get(kind: str, name: str) -> Op:
    try:
        return _REGISTRY[(kind, name)]
    except KeyError:
        known = ", ".join(n for k, n in _REGISTRY if k == kind)
        raise KeyError(f"no {kind} op {name!r} (registered: {known})") from None


def entries(kind: str | None = None) -> list[Op]:
    return [op for (k, _), op in _REGISTRY.items() if kind is None or k == kind]


def init_rules() -> dict[type, Callable[[nn.Module], dict]]:
    """Module class -> its pass-through-init rule, for the entries that have one."""
    return {op.make: op.init for op in _REGISTRY.values() if op.init is not None and isinstance(op.make, type)}


def is_ours(obj: Any) -> bool:
    return getattr(obj, "__module__", "").startswith("nasfpn.")


def exported_name(obj: Any) -> str:
    """How generated code refers to `obj`: its own name for nasfpn's (copied into the file),
    `nn.X` for torch modules."""
    if is_ours(obj):
        return obj.__name__
    if getattr(obj, "__module__", "").startswith("torch.nn"):
        return f"nn.{obj.__name__}"
    raise TypeError(f"cannot export a call of {obj!r}")
