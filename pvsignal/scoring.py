"""Every measure for every pair of a scope, in one vectorised pass: the export's columns."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from detectors.bcpnn import information_component
from detectors.frequentist import chi_square, prr, ror
from detectors.mgps import Hyperparameters, posterior
from detectors.rules import EbgmRule, IcRule, PrrRule, RorRule, false_discovery
from detectors.table import cells
from pvsignal.errors import InputError

# The columns of `pvsignal analyze` and `pvsignal signals export`, in order.
EXPORT_COLUMNS = (
    "product",
    "event",
    "a",
    "n_product",
    "n_event",
    "n_total",
    "expected",
    "prr",
    "prr_lower",
    "prr_upper",
    "chi2",
    "chi2_p",
    "ror",
    "ror_lower",
    "ror_upper",
    "ic",
    "ic025",
    "ic975",
    "ebgm",
    "eb05",
    "eb95",
    "qn",
    "signal_prr",
    "signal_ror",
    "signal_ic",
    "signal_ebgm",
)
STATISTICS = EXPORT_COLUMNS[2:]  # every column of a pair but its labels


@dataclass(frozen=True)
class ScoringConfig:
    """Interval levels, the chi-square flavour and the signal rule of each measure."""

    prr_level: float = 0.95
    ror_level: float = 0.95
    ic_level: float = 0.95
    eb_lower: float = 0.05
    eb_upper: float = 0.95
    yates: bool = True
    continuity: float = 0.0
    prr_rule: PrrRule = field(default_factory=PrrRule)
    ror_rule: RorRule = field(default_factory=RorRule)
    ic_rule: IcRule = field(default_factory=IcRule)
    ebgm_rule: EbgmRule = field(default_factory=EbgmRule)
    # When set, a PRR signal also needs its BH-adjusted chi-square p-value <= fdr_q.
    fdr_q: float | None = None


_RULE_FIELDS = {"prr": "prr_rule", "ror": "ror_rule", "ic": "ic_rule", "ebgm": "ebgm_rule"}


def with_rule_overrides(config: ScoringConfig, overrides: list[str]) -> ScoringConfig:
    """Apply ``measure.field=value`` threshold changes (``prr.min_a=5``), naming any bad one."""
    for override in overrides:
        target, _, text = override.partition("=")
        measure, _, name = target.strip().partition(".")
        if measure not in _RULE_FIELDS:
            raise InputError(
                f"rule {override!r}: unknown measure {measure!r}; "
                f"use one of {', '.join(_RULE_FIELDS)}"
            )
        rule = getattr(config, _RULE_FIELDS[measure])
        known = {f.name: f.type for f in fields(rule)}
        if name not in known:
            raise InputError(
                f"rule {override!r}: {measure} has no threshold {name!r}; "
                f"its thresholds are {', '.join(known)}"
            )
        try:
            value = int(text) if known[name] in (int, "int") else float(text)
        except ValueError:
            raise InputError(f"rule {override!r}: {text!r} is not a valid {known[name]}") from None
        config = replace(config, **{_RULE_FIELDS[measure]: replace(rule, **{name: value})})
    return config


@dataclass(frozen=True)
class PairCounts:
    """Distinct-report counts of every pair of a scope; ``expected`` may be stratified."""

    a: np.ndarray
    n_product: np.ndarray
    n_event: np.ndarray
    n_total: np.ndarray
    expected: np.ndarray


def score(
    counts: PairCounts, theta: Hyperparameters, config: ScoringConfig = ScoringConfig()
) -> dict[str, np.ndarray]:
    """All statistics and signal flags of every pair, keyed by export column (labels aside)."""
    table = cells(counts.a, counts.n_product, counts.n_event, counts.n_total)
    prr_ = prr(*table, level=config.prr_level, continuity=config.continuity)
    chi2 = chi_square(*table, yates=config.yates)
    ror_ = ror(*table, level=config.ror_level, continuity=config.continuity)
    expected = np.broadcast_to(np.asarray(counts.expected, dtype=np.float64), table.a.shape)
    index, a, e = _distinct_count_and_expectation(table.a, expected)
    ic = information_component(a, e, level=config.ic_level)
    eb = posterior(a, e, theta, lower=config.eb_lower, upper=config.eb_upper)
    ic, eb = type(ic)(*(x[index] for x in ic)), type(eb)(*(x[index] for x in eb))
    signal_prr = config.prr_rule(prr_.estimate, chi2.statistic, table.a)
    if config.fdr_q is not None:
        signal_prr &= false_discovery(chi2.pvalue, q=config.fdr_q)[0]
    return {
        "a": table.a,
        "n_product": np.asarray(counts.n_product, dtype=np.float64),
        "n_event": np.asarray(counts.n_event, dtype=np.float64),
        "n_total": np.broadcast_to(np.asarray(counts.n_total, dtype=np.float64), table.a.shape),
        "expected": expected,
        "prr": prr_.estimate,
        "prr_lower": prr_.lower,
        "prr_upper": prr_.upper,
        "chi2": chi2.statistic,
        "chi2_p": chi2.pvalue,
        "ror": ror_.estimate,
        "ror_lower": ror_.lower,
        "ror_upper": ror_.upper,
        "ic": ic.estimate,
        "ic025": ic.lower,
        "ic975": ic.upper,
        "ebgm": eb.ebgm,
        "eb05": eb.lower,
        "eb95": eb.upper,
        "qn": eb.qn,
        "signal_prr": signal_prr,
        "signal_ror": config.ror_rule(ror_.lower, table.a),
        "signal_ic": config.ic_rule(ic.lower),
        "signal_ebgm": config.ebgm_rule(eb.lower),
    }


def _distinct_count_and_expectation(
    a: np.ndarray, expected: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (a, E) pairs and the index mapping every pair to its own.

    The Bayesian measures depend on (a, E) alone, and rare products and events make many pairs
    share both (a quarter as many distinct as pairs in FAERS-like data), so they are computed
    once per distinct pair. Hash-based factorisation (pandas) keeps this at a few tens of ms.
    """
    e_code, e_values = pd.factorize(expected.view(np.int64))
    key_code, keys = pd.factorize((e_code.astype(np.int64) << 32) | a.astype(np.int64))
    return key_code, (keys & 0xFFFFFFFF).astype(np.float64), e_values[keys >> 32].view(np.float64)
