"""`pvsignal maxsprt`: plan an active-monitoring test (the exact Poisson MaxSPRT)."""

from __future__ import annotations

import argparse

from detectors.sequential import critical_value, performance, rejection_probability
from pvsignal.argtypes import _number, positive_int
from pvsignal.errors import InputError


def _positive(text: str) -> float:
    """A finite number > 0 (a surveillance length, a rate ratio)."""
    value = _number(float, "a number", text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _alpha(text: str) -> float:
    """A significance level in (0, 0.5], the range CV.Poisson accepts."""
    value = _number(float, "a number", text)
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"must lie in (0, 0.5], got {text!r}")
    return value


def add_maxsprt_command(commands: argparse._SubParsersAction) -> None:
    """Register ``pvsignal maxsprt cv`` on the CLI's subparsers."""
    parser = commands.add_parser(
        "maxsprt",
        help="plan a Poisson MaxSPRT (active monitoring): critical value, power",
        description="Exact design figures of the continuous Poisson MaxSPRT "
        "(Kulldorff et al. 2011), as R's Sequential package computes them.",
    )
    actions = parser.add_subparsers(dest="maxsprt_command", required=True)
    cv = actions.add_parser(
        "cv",
        help="the exact critical value (as Sequential::CV.Poisson)",
        description="Print the exact critical value on the log-likelihood-ratio scale for a "
        "surveillance of LENGTH expected events with at least MIN_EVENTS events to signal; "
        "with --power, also the power, expected time to signal and expected length of "
        "surveillance at rate ratio RR (as Sequential::Performance.Poisson).",
    )
    cv.add_argument(
        "--length",
        type=_positive,
        required=True,
        help="upper limit of surveillance, in events expected under the null (T)",
    )
    cv.add_argument(
        "--min-events", type=positive_int, default=1, help="events needed before a signal (M)"
    )
    cv.add_argument("--alpha", type=_alpha, default=0.05, help="significance level (0.05)")
    cv.add_argument("--power", action="store_true", help="also print power and time to signal")
    cv.add_argument(
        "--rr", type=_positive, default=2.0, help="true rate ratio for --power (2, as in R)"
    )
    cv.set_defaults(run=_run_cv)


def _run_cv(args: argparse.Namespace) -> int:
    try:
        value = critical_value(args.length, args.min_events, args.alpha)
    except ValueError as error:
        raise InputError(f"--length/--min-events/--alpha: {error}") from None
    realised = rejection_probability(args.length, args.min_events, value)
    print(f"critical value: {value:.10f}")
    print(f"alpha: {realised:.10f} (nominal {args.alpha:g})")
    if args.power:
        figures = performance(args.length, args.min_events, value, args.rr)
        print(f"power at rate ratio {args.rr:g}: {figures.power:.7f}")
        print(f"expected time to signal: {figures.signal_time:.6f} expected events")
        print(f"expected length of surveillance: {figures.sample_size:.6f} expected events")
    return 0
