"""Where a scope's MGPS prior comes from: fitted on the scope, borrowed from a parent, or given.

Empirical Bayes needs many pairs. A pilot scope (a Boao Lecheng hospital, a GBA institution, a
rare-disease import pilot) has hundreds of reports; there the maximum-likelihood fit typically
runs to a bound of its search, and a prior on a bound shrinks every EBGM to about 1 (a pair
with a = 5, E = 0.18 and PRR 47.7 showed EB05 0.80). Each scope therefore states in its
configuration where its prior comes from (``prior:`` in the scope YAML)::

    scopes:
      - {name: all, prior: {source: given, theta: {alpha1: 3.25, beta1: 0.40, ...}}}
      - {name: hainan-lecheng, filter: {...}, prior: {source: auto, parent: all}}

- ``auto`` (the default): the scope's own fit when it has at least ``min_pairs`` pairs and
  the fit is interior (converged, no parameter on a bound of the search); otherwise the
  parent's prior (``all`` unless ``parent`` says otherwise). ``all`` has no parent: its own
  fit is kept, with its warnings, unless a prior is given for it.
- ``fit``: always the scope's own fit (warnings and bounds reported as before).
- ``borrow``: always the parent's prior.
- ``given``: ``theta`` as configured (a national database's, say).

:func:`decide` is the one place the choice is made (the detector, ``signals export`` and the
API's snapshots all call it); its :class:`PriorDecision` is what a fit record says: the
``theta`` in use, ``theta_source`` (fitted, borrowed, given), ``decision`` ("borrowed from
all") and ``reason``, with the scope's own fit under ``own_fit`` when one was made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.mgps import Hyperparameters
from detectors.mgps_fit import Fit

ALL = "all"
# Below this many pairs a scope's own fit is not trusted (nor tried) under ``auto``. An
# interior fit is not enough: the five parameters are decided by the few pairs with large
# counts. A 589-case pilot (1,029 pairs) with six planted pairs of RR 5-10 fitted
# alpha1 = 16.9, beta1 = 2.83 -- "every signal has RR 6 +- 1.5" -- under which a pair with
# a = 5, E = 0.18 (RR 28) gets EBGM 7.1 instead of the national prior's 15.2
# (tests/pvsignal/test_priors.py). CAERS' 17,189 pairs fit interior and match openEBGM.
DEFAULT_MIN_PAIRS = 5_000
SOURCES = ("fitted", "borrowed", "given")  # theta_source of a fit record
# A national database's prior to give where none of one's own is at hand: openEBGM's published
# fit on FDA CAERS (its "posteriorCalcs" vignette). The demo's and benchmark's example.
CAERS_THETA = Hyperparameters(3.25379356, 0.39988854, 2.02612692, 1.90807970, 0.06534557)


class GivenTheta(BaseModel):
    """A prior stated in the configuration: gamma shapes and rates, and the first weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha1: float = Field(gt=0, allow_inf_nan=False)
    beta1: float = Field(gt=0, allow_inf_nan=False)
    alpha2: float = Field(gt=0, allow_inf_nan=False)
    beta2: float = Field(gt=0, allow_inf_nan=False)
    p: float = Field(gt=0, lt=1)

    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters(self.alpha1, self.beta1, self.alpha2, self.beta2, self.p)


class PriorChoice(BaseModel):
    """A scope's ``prior:`` field: where its MGPS prior comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["auto", "fit", "borrow", "given"] = "auto"
    parent: str | None = Field(
        default=None, description="the scope to borrow from (default: all; none for all itself)"
    )
    theta: GivenTheta | None = Field(default=None, description="the prior, with source: given")
    min_pairs: int = Field(
        default=DEFAULT_MIN_PAIRS, ge=1, description="auto: fewer pairs than this borrow"
    )

    @model_validator(mode="after")
    def _theta_with_given_only(self) -> PriorChoice:
        if self.source == "given" and self.theta is None:
            raise ValueError("source: given needs theta: {alpha1, beta1, alpha2, beta2, p}")
        if self.source != "given" and self.theta is not None:
            raise ValueError(f"theta is only read with source: given, not {self.source!r}")
        return self

    def parent_of(self, scope: str) -> str | None:
        """The scope this one borrows from (None: ``all`` without a configured parent)."""
        if self.parent is not None:
            return self.parent
        return None if scope == ALL else ALL


def check_prior_graph(choices: Sequence[tuple[str, PriorChoice]]) -> None:
    """Refuse a parent that is no scope, a scope borrowing from itself, or a cycle.

    ``choices`` are (scope name, its choice) in configuration order; the message names the
    field (``scopes[i].prior.parent``) and the value."""
    names = {name for name, _ in choices} | {ALL}
    position = {name: i for i, (name, _) in enumerate(choices)}
    for i, (name, choice) in enumerate(choices):
        parent = choice.parent_of(name)
        field = f"scopes[{i}].prior.parent"
        if choice.source == "borrow" and parent is None:
            raise ValueError(f"{field}: scope {name!r} borrows but names no parent to borrow from")
        if parent is None:
            continue
        if parent not in names:
            raise ValueError(
                f"{field}: unknown scope {parent!r} (scopes: {', '.join(sorted(names))})"
            )
        if parent == name:
            raise ValueError(f"{field}: scope {name!r} cannot borrow from itself")
    parents = {name: choice.parent_of(name) for name, choice in choices}
    for start in parents:
        seen = [start]
        current = parents.get(start)
        while current is not None:
            if current in seen:
                cycle = " -> ".join([*seen[seen.index(current) :], current])
                raise ValueError(
                    f"scopes[{position[start]}].prior.parent: {parents[start]!r} makes a cycle "
                    f"of borrowed priors ({cycle})"
                )
            seen.append(current)
            current = parents.get(current, None if current == ALL else ALL)


def parents_first(scopes: Iterable[str], parent_of: Callable[[str], str | None]) -> list[str]:
    """The scopes ordered so that every parent comes before its children (else by name)."""

    def depth(scope: str) -> int:
        steps, current = 0, parent_of(scope)
        while current is not None and steps < 1000:  # the graph is checked acyclic
            steps, current = steps + 1, parent_of(current)
        return steps

    return sorted(set(scopes), key=lambda scope: (depth(scope), scope))


@dataclass(frozen=True)
class PriorDecision:
    """The prior a scope uses and the fit record that says which and why."""

    theta: Hyperparameters
    source: str  # fitted, borrowed, given
    report: dict[str, Any]

    @property
    def on_bound(self) -> list[str]:
        return list(self.report.get("on_bound") or ())


def recorded_under(record: dict[str, Any], choice: PriorChoice) -> bool:
    """Was this fit record's decision made under ``choice`` (and its theta, when given)?
    Then it is the prior the detector and the API use, and needs no new decision."""
    if record.get("prior") != _choice_summary(choice):
        return False
    return choice.theta is None or record.get("theta") == choice.theta.hyperparameters()._asdict()


def _choice_summary(choice: PriorChoice) -> dict[str, Any]:
    """The choice as a fit record states it (its theta, when given, is the record's own)."""
    return choice.model_dump(exclude_none=True, exclude={"theta"})


def fit_is_interior(fit: Fit) -> bool:
    """Converged with no parameter on a bound of the search."""
    return fit.converged and not fit.on_bound


def needs_own_fit(choice: PriorChoice, pairs: int, *, parent_available: bool = True) -> bool:
    """Does the choice look at the scope's own fit? ``auto`` skips it below min_pairs when
    it can borrow; without a parent prior to borrow (``all``, or a parent with no pairs yet)
    ``auto`` and ``borrow`` fit on the scope."""
    if choice.source in ("auto", "borrow") and not parent_available:
        return True
    return choice.source == "fit" or (choice.source == "auto" and pairs >= choice.min_pairs)


def decide(
    scope: str,
    choice: PriorChoice,
    *,
    pairs: int,
    own: tuple[Fit, dict[str, Any]] | None,
    parent: Callable[[], PriorDecision] | None,
) -> PriorDecision:
    """The scope's prior under its choice.

    Parameters
    ----------
    scope, choice : the scope and its configured ``prior``.
    pairs : the scope's number of observed pairs.
    own : the scope's own fit and its report (with counts such as ``cases``), or None when no
        fit was made (see :func:`needs_own_fit`).
    parent : gives the parent's decision (called only when borrowing); None when there is
        no parent or it has no prior yet (then the own fit is used: see needs_own_fit).
    """
    common = {"prior": _choice_summary(choice), "pairs": pairs}
    if choice.source == "given":
        assert choice.theta is not None  # checked by PriorChoice
        theta = choice.theta.hyperparameters()
        report = {
            **common,
            "theta_source": "given",
            "theta": theta._asdict(),
            "decision": "given",
            "reason": "given in the scope configuration",
            "on_bound": [],
            "warnings": [],
        }
        return PriorDecision(theta, "given", report)
    if choice.source == "fit":
        return _fitted(own, common, "fitted on the scope, as configured (source: fit)")
    if choice.source == "auto":
        why_not = _why_not_own(choice, pairs, own)
        if why_not is None:
            return _fitted(own, common, f"fitted on the scope: {pairs} pairs, interior fit")
        if parent is None:
            reason = f"fitted on the scope, with no parent to borrow from: {why_not}"
            return _fitted(own, common, reason)
        return _borrowed(scope, choice, parent(), own, common, why_not)
    if parent is None:  # the parent has no pairs (so no prior) yet
        reason = f"fitted on the scope until {choice.parent_of(scope)} has a prior to borrow"
        return _fitted(own, common, reason)
    return _borrowed(scope, choice, parent(), own, common, "configured (source: borrow)")


def _why_not_own(
    choice: PriorChoice, pairs: int, own: tuple[Fit, dict[str, Any]] | None
) -> str | None:
    if pairs < choice.min_pairs or own is None:
        return f"too few pairs for its own fit ({pairs} < min_pairs {choice.min_pairs})"
    fit = own[0]
    if fit.on_bound:
        return f"its own fit sits on a bound of the search ({', '.join(fit.on_bound)})"
    if not fit.converged:
        return "its own fit did not converge"
    return None


def _fitted(
    own: tuple[Fit, dict[str, Any]] | None, common: dict[str, Any], reason: str
) -> PriorDecision:
    if own is None:
        raise ValueError("the scope's own fit is needed but none was made")
    fit, report = own
    return PriorDecision(
        fit.theta,
        "fitted",
        {**report, **common, "theta_source": "fitted", "decision": "fitted", "reason": reason},
    )


def _borrowed(
    scope: str,
    choice: PriorChoice,
    parent: PriorDecision,
    own: tuple[Fit, dict[str, Any]] | None,
    common: dict[str, Any],
    why: str,
) -> PriorDecision:
    name = choice.parent_of(scope)
    warnings = [f"{name}'s prior: {warning}" for warning in parent.report.get("warnings", ())]
    report = {
        **common,
        "theta_source": "borrowed",
        "theta": parent.theta._asdict(),
        "borrowed_from": name,
        "parent_theta_source": parent.source,
        "decision": f"borrowed from {name}",
        "reason": why,
        "on_bound": parent.on_bound,
        "warnings": warnings,
        "own_fit": None if own is None else _summary(own[1]),
    }
    return PriorDecision(parent.theta, "borrowed", report)


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The own fit's report without its per-start runs (the record's size stays small)."""
    return {key: value for key, value in report.items() if key != "runs"}


def prior_line(report: dict[str, Any]) -> str:
    """One line for a person: which prior, why, and its theta (``signals export``, ``fits``)."""
    theta = report.get("theta") or {}
    values = ", ".join(f"{name} {value:.4g}" for name, value in theta.items())
    decision = report.get("decision") or report.get("theta_source", "fitted")
    reason = report.get("reason")
    return f"{decision}" + (f" ({reason})" if reason else "") + f"; theta {values}"
