"""The score interface and the score registry.

A *score* turns per-step ``(param, grad)`` observations into an element-wise importance s(w), where higher means
"keep". The allocator hands every score the adapter parameters and gradients of all adapted matrices as one flat
1-D tensor each (see :class:`adalora_scores.allocation.TripletLayout`), so a score is written as element-wise tensor
code that runs once per step over the whole adapter, with no per-parameter Python work.

Adding a score is one small class in one file::

    from adalora_scores import Score, register_score

    @register_score("abs_grad")
    class AbsGrad(Score):
        '''s(w) = EMA of |g|.'''

        statistics = ("mean_abs_grad",)

        def __init__(self, beta: float = 0.85) -> None:
            super().__init__()
            self.beta = check_beta("beta", beta)

        def update(self, param, grad):
            ema_(self.mean_abs_grad, grad.abs(), self.beta)

        def element_scores(self, param):
            return self.mean_abs_grad

A score that needs per-example gradient statistics sets ``gradient = "per_example"`` and implements
:meth:`Score.update_moments` instead of :meth:`Score.update`; the trainer then hands it a :class:`GradientMoments`
each step (built by :class:`adalora_scores.adapter.per_example.collector.PerExampleGradients`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from adalora_scores.plugins.registry import Registry

if TYPE_CHECKING:
    from adalora_scores.allocation.layout import TripletLayout

__all__ = [
    "SCORES",
    "GradientMoments",
    "Score",
    "check_beta",
    "create_score",
    "ema_",
    "get_score_class",
    "list_scores",
    "register_score",
]


def check_beta(name: str, value: float) -> float:
    """Return ``value`` if it is a valid EMA coefficient in [0, 1), else raise a ValueError that says how to fix it."""
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be an EMA coefficient in [0, 1), got {value!r}; AdaLoRA's default is 0.85.")
    return float(value)


def ema_(average: Tensor, value: Tensor, beta: float, scratch: Tensor | None = None) -> Tensor:
    """In-place exponential moving average: ``average ← β·average + (1 − β)·value``.

    Rounded as the reference implementations write it, ``beta * average + (1 - beta) * value``: the product
    ``(1 − β)·value`` is rounded on its own before the sum, so the result equals PEFT's ``RankAllocator`` (and
    loralib's) bit for bit. ``add_(value, alpha=1 − β)`` fuses the product into the sum and rounds 1 ulp away on
    about 10% of entries, which can flip a near-tie at the budget threshold.

    ``scratch``: an optional tensor shaped like ``value`` (not ``value`` itself) to hold ``(1 − β)·value``, so that no
    adapter-sized temporary is allocated per step (see :meth:`Score.workspace`).
    """
    weighted = value * (1.0 - beta) if scratch is None else torch.mul(value, 1.0 - beta, out=scratch)
    return average.mul_(beta).add_(weighted)


GRADIENT_KINDS = ("mini_batch", "per_example")


@dataclass(frozen=True)
class GradientMoments:
    """Moments of the per-example adapter gradients of one optimizer step, in the layout's flat order.

    With g_n = ∂ℓ_n/∂w the gradient of example n's own loss (task loss only: the orthogonal regulariser is not a
    per-example quantity and is left out), over the ``count`` = N examples of the step (all micro-batches, all
    processes)::

        mean        = m1 = (1/N) Σ_n g_n
        mean_square = m2 = (1/N) Σ_n g_n²

    Attributes:
        mean: m1, flat float32, ``layout.numel`` long.
        mean_square: m2, flat float32, same size.
        count: N, the number of examples the moments average over.
    """

    mean: Tensor
    mean_square: Tensor
    count: int

    def __post_init__(self) -> None:
        if self.mean.shape != self.mean_square.shape or self.mean.dim() != 1:
            raise ValueError(
                f"mean and mean_square must be flat tensors of one size, got {tuple(self.mean.shape)} and "
                f"{tuple(self.mean_square.shape)}."
            )
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be a positive number of examples, got {self.count!r}.")


class Score:
    """Base class of an element-wise importance score.

    Subclasses list their persistent per-element statistics in ``statistics``; :meth:`bind` allocates each as a zero
    tensor attribute of the same size as the flat adapter, and :meth:`state_dict` / :meth:`load_state_dict` save and
    restore them with no extra code. A subclass implements :meth:`update` and :meth:`element_scores`.

    Attributes:
        name: the registry name, set by :func:`register_score`.
        gradient: which gradient signal the score reads: ``"mini_batch"`` (the step's accumulated ``p.grad``, passed
            to :meth:`update`) or ``"per_example"`` (:class:`GradientMoments` of per-example gradients, passed to
            :meth:`update_moments`).
        statistics: names of the per-element statistic tensors this score keeps.
        num_updates: how many times :meth:`update` ran since the last reset (for bias corrections).
        layout: the :class:`~adalora_scores.allocation.TripletLayout` the score is bound to (says which entry is
            λ, P or Q).
    """

    name: ClassVar[str] = ""
    gradient: ClassVar[str] = "mini_batch"
    min_examples: ClassVar[int] = 1
    """Per-example scores: the fewest examples a step needs to be observed (a variance needs 2)."""
    statistics: ClassVar[tuple[str, ...]] = ()
    seeded_by_run: ClassVar[bool] = False
    """The score draws random numbers and takes a ``seed`` option; the training engine passes the run's seed
    unless ``score_options`` sets one (the ``random`` controls)."""

    def __init__(self) -> None:
        self.num_updates = 0
        self.layout: TripletLayout | None = None
        self._workspace: list[Tensor] = []

    # -- the two methods a score implements -------------------------------------------------------------------
    def update(self, param: Tensor, grad: Tensor) -> None:
        """Fold one step's observation into the statistics, in place. ``param`` and ``grad`` are flat 1-D views."""
        raise NotImplementedError(f"{type(self).__name__} must implement update(param, grad)")

    def update_moments(self, param: Tensor, moments: GradientMoments) -> None:
        """Per-example scores (``gradient = "per_example"``) implement this instead of :meth:`update`: fold one
        step's per-example moments into the statistics, in place. ``param`` is the flat 1-D view of w."""
        raise NotImplementedError(f"{type(self).__name__} must implement update_moments(param, moments)")

    def element_scores(self, param: Tensor) -> Tensor:
        """Return s(w) for every adapter entry, a flat tensor shaped like ``param``; higher means keep.

        The result is read before the next call to this score and never modified, so it may be a statistic or a
        :meth:`workspace` buffer.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement element_scores(param)")

    # -- plumbing shared by every score ---------------------------------------------------------------------------
    def bind(self, layout: TripletLayout) -> None:
        """Allocate zeroed statistics for ``layout`` (called once by the allocator)."""
        self.layout = layout
        for stat in self.statistics:
            setattr(self, stat, torch.zeros(layout.numel, dtype=torch.float32, device=layout.device))
        self.num_updates = 0

    def workspace(self, index: int) -> Tensor:
        """A persistent scratch tensor the size of the adapter (not saved), for ``out=`` arguments.

        Optional: plain out-of-place code is correct too. Fresh multi-megabyte temporaries cost page faults on every
        step, so the built-in scores write their intermediates here instead.
        """
        while len(self._workspace) <= index:
            self._workspace.append(self.layout.zeros())
        return self._workspace[index]

    def observe(self, param: Tensor, grad: Tensor, moments: GradientMoments | None = None) -> None:
        """Run :meth:`update` (mini-batch scores) or :meth:`update_moments` (per-example scores) and count it.

        The allocator calls this, never ``update`` directly. ``moments`` is required by per-example scores and
        ignored by mini-batch ones.
        """
        if self.gradient == "per_example":
            if moments is None:
                raise ValueError(
                    f"score {self.name or type(self).__name__!r} needs per-example gradient moments: attach a "
                    "PerExampleGradients collector (adalora_scores.adapter.per_example) and pass its consume() "
                    "result as observe(param, grad, moments)."
                )
            if moments.mean.shape != param.shape:
                raise ValueError(
                    f"moments have {moments.mean.numel()} entries but the adapter has {param.numel()}; "
                    "was the collector built for another layout?"
                )
            if moments.count < self.min_examples:  # e.g. a 1-example last batch: no variance across examples
                warnings.warn(
                    f"score {self.name!r} needs at least {self.min_examples} examples per optimizer step; a step "
                    f"with {moments.count} is not observed.",
                    stacklevel=3,
                )
                return
            self.num_updates += 1
            self.update_moments(param, moments)
        elif self.gradient == "mini_batch":
            self.num_updates += 1
            self.update(param, grad)
        else:
            raise ValueError(f"{type(self).__name__}.gradient must be one of {GRADIENT_KINDS}, got {self.gradient!r}.")

    def to(self, device: torch.device | str) -> None:
        """Move every tensor this score holds (its statistics, workspace and any tensor a subclass caches as an
        attribute) to ``device``, keeping the values; the allocator calls it when the model moved."""
        device = torch.device(device)
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.device != device:
                setattr(self, name, value.to(device))
        self._workspace = [scratch.to(device) for scratch in self._workspace]

    def reset(self) -> None:
        """Zero all statistics, as AdaLoRA does once the rank pattern is frozen."""
        for stat in self.statistics:
            getattr(self, stat).zero_()
        self.num_updates = 0

    def options(self) -> dict[str, Any]:
        """The constructor options of this score, read back from the attributes of the same names."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def state_dict(self) -> dict[str, Any]:
        """Statistics and counters, as tensors and plain values (safe for ``torch.save``)."""
        return {
            "name": self.name,
            "num_updates": self.num_updates,
            "statistics": {stat: getattr(self, stat).detach().clone() for stat in self.statistics},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; refuses a state of another score or size."""
        if state.get("name") != self.name:
            raise ValueError(
                f"score state belongs to {state.get('name')!r}, not {self.name!r}; attach the same score."
            )
        saved = state["statistics"]
        if set(saved) != set(self.statistics):
            raise ValueError(f"score state has statistics {sorted(saved)}, expected {sorted(self.statistics)}.")
        for stat in self.statistics:
            current = getattr(self, stat, None)
            if current is None or current.shape != saved[stat].shape:
                raise ValueError(
                    f"statistic {stat!r} has shape {tuple(saved[stat].shape)} but the adapter needs "
                    f"{None if current is None else tuple(current.shape)}; was the state saved for another model?"
                )
            current.copy_(saved[stat])
        self.num_updates = int(state["num_updates"])

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


SCORES: Registry[type[Score]] = Registry("score")
"""The registered scores: name → :class:`Score` subclass; described by the first sentence of its docstring."""
ScoreClass = TypeVar("ScoreClass", bound=type[Score])


def register_score(name: str) -> Callable[[ScoreClass], ScoreClass]:
    """Class decorator that registers a :class:`Score` subclass under ``name``.

    Raises:
        ValueError: if ``name`` is already registered (pick another name), or is not a lowercase identifier.
        TypeError: if the decorated object is not a Score subclass.
    """
    if not isinstance(name, str) or not name.isidentifier() or name.lower() != name:
        raise ValueError(f"score names are lowercase identifiers such as 'my_score', got {name!r}.")

    def decorator(cls: ScoreClass) -> ScoreClass:
        if not (isinstance(cls, type) and issubclass(cls, Score)):
            raise TypeError(
                f"@register_score({name!r}) must decorate a subclass of adalora_scores.Score, got {cls!r}."
            )
        if cls.gradient not in GRADIENT_KINDS:
            raise ValueError(f"{cls.__qualname__}.gradient must be one of {GRADIENT_KINDS}, got {cls.gradient!r}.")
        SCORES.register(name, cls).name = name
        return cls

    return decorator


def list_scores() -> list[str]:
    """Names of all registered scores, sorted."""
    return SCORES.names()


def get_score_class(name: str) -> type[Score]:
    """The class registered as ``name``; an unknown name raises a KeyError listing the known ones."""
    return SCORES.get(name)


def create_score(name: str, **options: Any) -> Score:
    """Build the score registered as ``name`` with its constructor ``options``."""
    cls = get_score_class(name)
    try:
        return cls(**options)
    except TypeError as error:
        raise TypeError(f"bad options for score {name!r}: {error}") from None
