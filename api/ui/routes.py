"""The dashboard's pages. Every figure on them comes from the API's own handlers, called with
the session's principal after the API's own role check (``admitted``): one query, two
renderings, and the same tenancy (an MAH's page shows what its key reads on /v1, nothing more).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.auth import Principal, Role
from api.deps import (
    Admin,
    CaseReader,
    ClockDep,
    Reader,
    RegistryDep,
    Regulator,
    RuntimeDep,
    Submitter,
    audit_actor,
    visible_product,
)
from api.problems import ApiError, UnprocessableError
from api.routes import alerts, audit, cases, keys, rates, reviews, scopes, signals, trends
from api.routes import subscriptions as subscription_routes
from api.runtime import Runtime
from api.schemas import KeyIn, ReviewPatch, SubscriptionIn
from api.tenancy import RegistrySnapshot
from api.ui.charts import MEASURE_COLUMNS, bar_chart, trend_chart
from api.ui.session import CSRF_FIELD, SignedIn, SignedInDep, check_csrf
from api.ui.web import PageRoute, admitted, body_of, home_of, may, render
from pvsignal.case_access import CaseBreakdown, case_breakdown
from pvsignal.detection import MEASURES
from pvsignal.products import Pathway, RegisteredProduct
from pvsignal.review import Status as ReviewState
from pvsignal.store import SqlStore

log = logging.getLogger("api.ui")
router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)

Text = Annotated[str | None, Query(max_length=500)]
STATUSES = get_args(signals.Status)
SORTS = get_args(signals.Sort)
PERIODS = ("month", "quarter", "year")
_CJK = re.compile(r"[\u3400-\u9fff]")
# A review status filters the organisation's review queue; "unreviewed" (every other pair) is
# what the table shows without this filter, so it is not one of its values.
REVIEW_FILTER = tuple(s.value for s in ReviewState if s is not ReviewState.unreviewed)
# The statistical status shown for a row: the most significant open status of any measure.
_SIGNIFICANCE = ("new", "strengthened", "ongoing", "weakened", "closed")


@router.get("")
def home(user: SignedInDep) -> Response:
    return RedirectResponse(home_of(user.principal), status_code=303)


def _choice(field: str, value: str | None, allowed: tuple[str, ...] | list[str]) -> str | None:
    """A select's value: empty means any; anything else must be one of ``allowed``."""
    if not value:
        return None
    if value not in allowed:
        raise UnprocessableError(
            f"{field}: {value!r} is not one of {', '.join(allowed)}",
            errors=[{"field": f"query.{field}", "reason": "not a choice", "value": value}],
        )
    return value


def names_of(registry: RegistrySnapshot, product_id: str) -> dict[str, str | None]:
    """The registered product's Chinese and English names (the first of each in the registry)."""
    product = registry.get(product_id)
    names = product.names if product is not None else []
    return {
        "zh": next((n for n in names if _CJK.search(n)), None),
        "en": next((n for n in names if not _CJK.search(n)), None),
    }


# -- signals -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalQuery:
    scope: str = "all"
    pathway: str | None = None
    product_id: str | None = None
    mah_id: str | None = None
    pt: str | None = None
    measure: str | None = None
    status: str | None = None
    review_status: str | None = None
    period: str = "month"
    sort: str = "-eb05"
    limit: int = 25
    cursor: str | None = None

    def link(self, **changes: Any) -> str:
        """This query as a URL query string, with ``changes`` (None drops a parameter)."""
        values = {**self.__dict__, **changes}
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def signal_query(
    scope: Annotated[str, Query(max_length=63)] = "all",
    pathway: Text = None,
    product_id: Text = None,
    mah_id: Text = None,
    pt: Text = None,
    measure: Text = None,
    status: Text = None,
    review_status: Text = None,
    period: Text = None,
    sort: Text = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> SignalQuery:
    return SignalQuery(
        scope=scope,
        pathway=_choice("pathway", pathway, [p.value for p in Pathway]),
        product_id=product_id or None,
        mah_id=mah_id or None,
        pt=(pt or "").strip() or None,
        measure=_choice("measure", measure, MEASURES),
        status=_choice("status", status, STATUSES),
        review_status=_choice("review_status", review_status, REVIEW_FILTER),
        period=_choice("period", period, PERIODS) or "month",
        sort=_choice("sort", sort, SORTS) or "-eb05",
        limit=limit,
        cursor=cursor or None,
    )


@dataclass
class SignalTable:
    query: SignalQuery
    total: int
    rows: list[dict[str, Any]]
    next_cursor: str | None
    period_label: str | None


def signal_table(
    principal: Principal,
    runtime: Runtime,
    registry: RegistrySnapshot,
    store: SqlStore,
    clock: ClockDep,
    query: SignalQuery,
) -> SignalTable:
    """The table's rows: ``/v1/signals`` for the filters, the caller's organisation's reviews
    for their status, and each shown pair's cases received in the scope's latest period."""
    reader = admitted(Reader, principal)
    queue = _reviews(reader, store, clock, query.scope)
    wanted_pairs = None
    if query.review_status is not None:
        wanted_pairs = {k for k, r in queue.items() if r["status"] == query.review_status}
    page = body_of(
        signals.list_signals(
            reader,
            runtime,
            registry,
            scope=query.scope,
            product_id=[query.product_id] if query.product_id else _products_of(wanted_pairs),
            mah_id=query.mah_id,
            pathway=Pathway(query.pathway) if query.pathway else None,
            pt=[query.pt] if query.pt else _pts_of(wanted_pairs),
            measure=query.measure,
            status=query.status,
            sort=query.sort,
            limit=1000 if wanted_pairs is not None else query.limit,
            cursor=None if wanted_pairs is not None else query.cursor,
        )
    )
    rows, total, following = page["signals"], page["total"], page["next_cursor"]
    if wanted_pairs is not None:  # a review status: the queue's pairs, on one page (of at
        # most 1000 product x PT combinations of them: a work queue, not the whole table)
        rows = [r for r in rows if (r["product_id"], r["pt"]) in wanted_pairs]
        total, following = len(rows), None
    label, new = _new_counts(store, query.scope, rows, query.period)
    for row, count in zip(rows, new, strict=True):
        row["names"] = names_of(registry, row["product_id"])
        row["new"] = count
        review = queue.get((row["product_id"], row["pt"]))
        row["review_status"] = review["status"] if review else ReviewState.unreviewed.value
        row["status"] = _status_of(row)
    return SignalTable(query, total, rows, following, label)


def _reviews(
    principal: Principal, store: SqlStore, clock: ClockDep, scope: str
) -> dict[tuple[str, str], dict[str, Any]]:
    """The caller's organisation's reviews in the scope, by pair (GET /v1/reviews)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    cursor = None
    while True:
        page = reviews.list_reviews(principal, store, clock, scope=scope, limit=1000, cursor=cursor)
        for review in page.reviews:
            found[(review.product_id, review.pt)] = review.model_dump()
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _products_of(pairs: set[tuple[str, str]] | None) -> list[str] | None:
    return None if pairs is None else sorted({p for p, _ in pairs}) or ["\0none"]


def _pts_of(pairs: set[tuple[str, str]] | None) -> list[str] | None:
    return None if pairs is None else sorted({pt for _, pt in pairs}) or ["\0none"]


def _status_of(row: dict[str, Any]) -> str | None:
    found = {state["status"] for state in row["signals"].values() if state.get("status")}
    return next((s for s in _SIGNIFICANCE if s in found), None)


def _period_of(month: str, period: str) -> str:
    """The period ('2026-03', '2026-Q1', '2026') of a 'YYYY-MM' month."""
    if period == "month":
        return month
    year, number = month.split("-")
    return year if period == "year" else f"{year}-Q{(int(number) - 1) // 3 + 1}"


def _new_counts(
    store: SqlStore, scope: str, rows: list[dict[str, Any]], period: str
) -> tuple[str | None, list[int]]:
    """Each pair's cases received in the scope's latest period (as the trend counts them)."""
    months = sorted(reports_per_month(store, scope))
    if not months:
        return None, [0] * len(rows)
    latest = _period_of(months[-1], period)
    pairs = store.pair_periods(scope, [(r["product_id"], r["pt"]) for r in rows])
    return latest, [
        sum(
            a
            for month, a in pairs[(r["product_id"], r["pt"])].items()
            if month != "unknown" and _period_of(month, period) == latest
        )
        for r in rows
    ]


def reports_per_month(store: SqlStore, scope: str) -> Counter[str]:
    """The scope's counted reports per received month (its totals over strata; the pair
    asked for is none, only the scope's part of the answer is read)."""
    months: Counter[str] = Counter()
    for _, month, n in store.period_counts(scope, "", "").totals:
        if month != "unknown":
            months[month] += n
    return months


_T = TypeVar("_T")
_PER_READER: dict[tuple[str, str, str, str | None], Any] = {}
SELECT_MOST = 300  # longer lists of choices are typed in, not picked from a select


def _kept(
    what: str, principal: Principal, registry: RegistrySnapshot, make: Callable[[], _T]
) -> _T:
    """``make()``'s answer for the caller, kept per registry version and reader: a large
    registry takes a while to walk (50,000 products: tens of milliseconds a page)."""
    key = (what, registry.digest, principal.role.value, principal.org)
    found = _PER_READER.get(key)
    if found is None:
        if len(_PER_READER) > 128:
            _PER_READER.clear()
        found = _PER_READER[key] = make()
    return found


def visible_products(principal: Principal, registry: RegistrySnapshot) -> list[RegisteredProduct]:
    """The registered products the caller may see (GET /v1/products' rule, ``can_see``), by id."""
    admitted(Reader, principal)
    return _kept(
        "products",
        principal,
        registry,
        lambda: sorted(
            (p for p in registry.registry if registry.can_see(principal, p.product_id)),
            key=lambda p: p.product_id,
        ),
    )


def _filter_options(
    principal: Principal, runtime: Runtime, registry: RegistrySnapshot
) -> dict[str, Any]:
    visible = visible_products(principal, registry)
    mahs = _kept(
        "mahs", principal, registry, lambda: sorted({p.mah_id for p in visible if p.mah_id})
    )
    return {
        "scopes": [s.name for s in runtime.scopes.all_scopes()],
        "pathways": [p.value for p in Pathway],
        "products": [{"id": p.product_id, **names_of(registry, p.product_id)} for p in visible]
        if len(visible) <= SELECT_MOST
        else None,
        "mahs": mahs if len(mahs) <= SELECT_MOST else None,
        "measures": MEASURES,
        "statuses": STATUSES,
        "review_statuses": REVIEW_FILTER,
        "periods": PERIODS,
        "limits": (25, 50, 100),
    }


SignalQueryDep = Annotated[SignalQuery, Depends(signal_query)]


def shown_table(
    user: SignedInDep,
    runtime: RuntimeDep,
    registry: RegistryDep,
    clock: ClockDep,
    query: SignalQueryDep,
) -> SignalTable:
    """The table the query shows: the page and its CSV are the same rows."""
    with runtime.pool.store() as store:
        return signal_table(user.principal, runtime, registry, store, clock, query)


ShownTable = Annotated[SignalTable, Depends(shown_table)]


@router.get("/signals")
def signals_page(
    request: Request,
    user: SignedInDep,
    runtime: RuntimeDep,
    registry: RegistryDep,
    table: ShownTable,
) -> Response:
    context = {
        "table": table,
        "options": _filter_options(user.principal, runtime, registry),
        "measure_columns": MEASURE_COLUMNS,
    }
    return render(request, "signals.html", context, user=user)


CSV_COLUMNS = (
    "product_id", "name_zh", "name_en", "pt", "new", "total",
    "prr", "prr_lower", "prr_upper", "signal_prr",
    "ror", "ror_lower", "ror_upper", "signal_ror",
    "ic", "ic025", "ic975", "signal_ic",
    "ebgm", "eb05", "eb95", "signal_ebgm",
    "status", "review_status",
)  # fmt: skip


@router.get("/signals.csv")
def signals_csv(table: ShownTable) -> Response:
    """Exactly the rows and columns of the table the same query shows (this page of it)."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS[:4], f"new_{table.period_label or ''}", *CSV_COLUMNS[5:]])
    for row in table.rows:
        stats = row["statistics"]
        writer.writerow(
            [
                row["product_id"],
                row["names"]["zh"] or "",
                row["names"]["en"] or "",
                row["pt"],
                row["new"],
                row["a"],
                *(
                    _cell(value)
                    for measure, (estimate, lower, upper, _, _) in MEASURE_COLUMNS.items()
                    for value in (
                        stats[estimate],
                        stats[lower],
                        stats[upper],
                        row["signals"][measure]["flagged"],
                    )
                ),
                row["status"] or "",
                row["review_status"],
            ]
        )
    return Response(
        sink.getvalue().encode("utf-8-sig"),  # the BOM: spreadsheet programs read UTF-8 then
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="signals-{table.query.scope}.csv"'},
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


# -- one signal ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    scope: str
    product_id: str
    pt: str


PairText = Annotated[str, Query(min_length=1, max_length=500)]


def _detail_context(
    user: SignedIn,
    runtime: Runtime,
    registry: RegistrySnapshot,
    clock: ClockDep,
    pair: Pair,
    measure: str,
    period: str,
) -> dict[str, Any]:
    reader = admitted(Reader, user.principal)
    with runtime.pool.store() as store:
        detail = body_of(
            signals.signal_detail(
                pair.scope, pair.product_id, pair.pt, reader, runtime, registry, store
            )
        )
        trend = body_of(
            trends.signal_trend(
                pair.scope, pair.product_id, pair.pt, reader, runtime, registry, store,
                period=period,
            )
        )  # fmt: skip
        case_page = body_of(
            cases.list_cases(
                admitted(CaseReader, user.principal),
                audit_actor(user.principal),
                runtime,
                registry,
                store,
                scope=pair.scope,
                product_id=pair.product_id,
                pt=pair.pt,
                limit=100,
            )
        )
        product = visible_product(pair.product_id, reader, registry)
        review_response = reviews.get_review(
            pair.scope, pair.product_id, pair.pt, product, reader, runtime, store, clock
        )
        review = body_of(review_response)
        trail = None
        if may(Regulator, user.principal):
            trail = audit.list_audit(
                admitted(Regulator, user.principal),
                store,
                object_type="review",
                object_id=f"{review['review']['org']}/{pair.scope}/{pair.product_id}/{pair.pt}",
                limit=1000,
            ).model_dump()["entries"]
        monitoring = _monitoring(reader, runtime, registry, store, pair)
    access = cases._access(runtime, admitted(CaseReader, user.principal), registry)
    points = trend["points"]
    return {
        "pair": pair,
        "names": names_of(registry, pair.product_id),
        "product": product,
        "detail": detail,
        "measure": measure,
        "measures": MEASURES,
        "period": period,
        "periods": PERIODS,
        "trend": trend,
        "chart": trend_chart(points, measure),
        "counts_chart": bar_chart([p["period"] for p in points], [p["new"]["a"] for p in points]),
        "case_level": case_page["level"],
        "case_columns": access.columns(),
        "case_rows": [access.flat(c) for c in case_page["cases"]],
        "more_cases": case_page["next_cursor"] is not None,
        "review": review["review"],
        "shared_reviews": review["shared"],
        "etag": review_response.headers["ETag"],
        "trail": trail,
        "priorities": ("low", "medium", "high"),
        "monitoring": monitoring,
    }


def _monitoring(
    reader: Principal, runtime: Runtime, registry: RegistrySnapshot, store: SqlStore, pair: Pair
) -> dict[str, Any] | None:
    """The rates panel: the pair's incidence and observed/expected in the page's scope (GET
    /v1/rates' rows, total and per quarter) and its sequential test there, or the scopes that
    test it; None when the product has no exposure in the scope (no denominator, no panel)."""
    query = (reader, runtime, registry, store, pair.scope, pair.product_id, pair.pt)
    total = rates.visible_rates(*query)
    if not total or not total[0]["patients"]:
        return None
    elsewhere = [
        s.name
        for s in runtime.scopes.all_scopes()
        if s.name != pair.scope
        and rates.visible_test(reader, runtime, registry, store, s.name, pair.product_id, pair.pt)
    ]
    return {
        "total": total[0],
        "quarters": rates.visible_rates(*query, period="quarter"),
        "test": rates.visible_test(*query),
        "tested_in": elsewhere,
    }


@router.get("/signal")
def signal_page(
    request: Request,
    user: SignedInDep,
    runtime: RuntimeDep,
    registry: RegistryDep,
    clock: ClockDep,
    product_id: PairText,
    pt: PairText,
    scope: Annotated[str, Query(max_length=63)] = "all",
    measure: Text = None,
    period: Text = None,
) -> Response:
    pair = Pair(scope, product_id, pt)
    context = _detail_context(
        user, runtime, registry, clock, pair,
        _choice("measure", measure, MEASURES) or "ebgm",
        _choice("period", period, PERIODS) or "month",
    )  # fmt: skip
    return render(request, "signal.html", context, user=user)


@router.post("/signal/review")
async def review_signal(
    request: Request,
    user: SignedInDep,
    runtime: RuntimeDep,
    registry: RegistryDep,
    clock: ClockDep,
) -> Response:
    """The review panel's form, as PATCH /v1/.../review with the ETag the page was read at."""
    form = await request.form()
    check_csrf(runtime, user.session.nonce, form.get(CSRF_FIELD))
    pair = Pair(str(form.get("scope", "all")), str(form.get("product_id")), str(form.get("pt")))
    reader = admitted(Reader, user.principal)
    changes: dict[str, Any] = {}
    for name in ("status", "comment", "assignee", "priority", "reason"):
        value = str(form.get(name) or "").strip()
        if value:
            changes[name] = value
    due = str(form.get("due_at") or "").strip()
    if due:
        changes["due_at"] = f"{due}T23:59:59+00:00"
    problem = None
    try:
        body = ReviewPatch.model_validate(changes)
        product = visible_product(pair.product_id, reader, registry)
        await reviews.patch_review(
            pair.scope, pair.product_id, pair.pt, body, product, reader,
            audit_actor(user.principal), runtime, clock, if_match=str(form.get("etag") or "*"),
        )  # fmt: skip
    except ApiError as error:
        if error.status == 404:
            raise
        problem = str(error)
    except ValueError as error:  # pydantic: a field of the form named with its value
        problem = str(error)
    if problem is None:
        target = f"/ui/signal?{_pair_query(pair)}#review"
        return RedirectResponse(target, status_code=303)
    context = await run_in_threadpool(
        _detail_context, user, runtime, registry, clock, pair, "ebgm", "month"
    )
    return render(request, "signal.html", {**context, "problem": problem}, user=user, status=409)


def _pair_query(pair: Pair) -> str:
    return urlencode({"scope": pair.scope, "product_id": pair.product_id, "pt": pair.pt})


# -- overview, products, alerts ------------------------------------------------------------------


_SCOPE_LISTS: dict[tuple[Any, ...], list[dict[str, Any]]] = {}


def _scope_list(
    principal: Principal, runtime: Runtime, registry: RegistrySnapshot, store: SqlStore
) -> list[dict[str, Any]]:
    """GET /v1/scopes for the caller, read again only when a scope's snapshot was rebuilt (its
    counts, fit or states changed) or the registry did: it counts every pair of the store."""
    generations = tuple(
        getattr(runtime.signals.get(s.name), "generation", None)
        for s in runtime.scopes.all_scopes()
    )
    key = (generations, registry.digest, principal.role.value, principal.org)
    found = _SCOPE_LISTS.get(key)
    if found is None:
        if len(_SCOPE_LISTS) > 64:
            _SCOPE_LISTS.clear()
        listed = scopes.list_scopes(principal, runtime, registry, store)
        found = _SCOPE_LISTS[key] = listed.model_dump()["scopes"]
    return found


@dataclass(frozen=True)
class Counted:
    """A breakdown and the store's change token it was counted at."""

    token: tuple[Any, ...]
    breakdown: CaseBreakdown
    at: dt.datetime


_BREAKDOWNS: dict[tuple[Any, ...], Counted] = {}
_RECOUNTS: dict[tuple[Any, ...], threading.Thread] = {}
_RECOUNTS_LOCK = threading.Lock()


def _case_breakdown(
    principal: Principal,
    runtime: Runtime,
    registry: RegistrySnapshot,
    store: SqlStore,
    scope: str,
) -> Counted:
    """The scope's cases per month by pathway, region and institution as the caller's case
    listing shows them (pvsignal.case_access.case_breakdown, from the store's place counts:
    a row per month, place and product list, not per case). Counted on the first view; after
    the store changed (its change token moved) the page shows the last count, with its time,
    while one recount per scope and reader runs beside it, so a page under a steady stream
    of batches is not recounted on every view."""
    key = _breakdown_key(principal, runtime, registry, scope)
    token = store.change_token()
    found = _BREAKDOWNS.get(key)
    if found is None:
        with _RECOUNTS_LOCK:
            running = _RECOUNTS.get(key)  # the count started with the process (warm_overviews)
        if running is not None:
            running.join()
            found = _BREAKDOWNS.get(key)
    if found is None:
        found = _remember(key, _count(principal, runtime, registry, store, scope, token))
    elif found.token != token:
        _Recount(key, principal, runtime, registry, scope).start()
    return found


def _breakdown_key(
    principal: Principal, runtime: Runtime, registry: RegistrySnapshot, scope: str
) -> tuple[Any, ...]:
    """Whose breakdown: every reader who sees everything reads the same (case_access)."""
    reader = ("everything",) if principal.sees_everything else (principal.role.value, principal.org)
    # One process may serve several stores (tests do).
    return (runtime.settings.store_url, scope, registry.digest, *reader)


@dataclass(frozen=True)
class _Recount:
    """A count of a scope's breakdown for a reader, in a thread of its own."""

    key: tuple[Any, ...]
    principal: Principal
    runtime: Runtime
    registry: RegistrySnapshot
    scope: str

    def start(self) -> threading.Thread:
        """Start it, unless one is counting this breakdown already; the thread counting it."""
        with _RECOUNTS_LOCK:
            if self.key not in _RECOUNTS:
                thread = threading.Thread(target=self._run, daemon=True)
                _RECOUNTS[self.key] = thread
                thread.start()
            return _RECOUNTS[self.key]

    def _run(self) -> None:
        try:
            with self.runtime.pool.store() as store:
                token = store.change_token()  # read first: a change during the count moves it
                counted = _count(
                    self.principal, self.runtime, self.registry, store, self.scope, token
                )
                _remember(self.key, counted)
        except Exception:  # the next view counts again (a store closed at shutdown, say)
            log.exception("overview count failed", extra={"scope": self.scope})
        finally:
            with _RECOUNTS_LOCK:
                _RECOUNTS.pop(self.key, None)


def warm_overviews(runtime: Runtime) -> list[threading.Thread]:
    """Count each scope's overview for the readers who see everything (regulators, admins)
    beside the process's start, as its signal snapshots are built: a first view finds it
    counted, or waits for what is left of the count. Returns the threads counting."""
    principal = Principal(Role.regulator, None, "overview at start")
    registry = runtime.registry.current()
    counting = []
    for scope in runtime.known_scopes:
        key = _breakdown_key(principal, runtime, registry, scope)
        counting.append(_Recount(key, principal, runtime, registry, scope).start())
    return counting


def _count(
    principal: Principal,
    runtime: Runtime,
    registry: RegistrySnapshot,
    store: SqlStore,
    scope: str,
    token: tuple[Any, ...],
) -> Counted:
    access = cases._access(runtime, admitted(CaseReader, principal), registry)
    pathway_of = {p.product_id: p.pathway.value for p in registry.registry}
    counted = case_breakdown(store, access, scope, pathway_of)
    return Counted(token, counted, dt.datetime.now(dt.UTC))


def _remember(key: tuple[Any, ...], counted: Counted) -> Counted:
    if len(_BREAKDOWNS) > 256:
        _BREAKDOWNS.clear()
    _BREAKDOWNS[key] = counted
    return counted


def finish_recounts() -> None:
    """Wait for the recounts running now (tests, and a clean shutdown)."""
    with _RECOUNTS_LOCK:
        running = list(_RECOUNTS.values())
    for recount in running:
        recount.join()


MONTHS_SHOWN = 12  # the latest months as columns; the total column counts every month
ROWS_SHOWN = 15  # the categories with most cases; the rest are summed in one row


def month_table(counts: dict[str, dict[str, int]], months: list[str]) -> dict[str, Any]:
    """A category x month table: the latest months, categories by their cases (most first),
    beyond ROWS_SHOWN summed as one row of ``others`` (how many is said)."""
    shown = months[-MONTHS_SHOWN:]
    ranked = sorted(counts.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    rows = [
        {"name": name, "months": [per.get(m, 0) for m in shown], "total": sum(per.values())}
        for name, per in ranked[:ROWS_SHOWN]
    ]
    rest = ranked[ROWS_SHOWN:]
    others = None
    if rest:
        others = {
            "count": len(rest),
            "months": [sum(per.get(m, 0) for _, per in rest) for m in shown],
            "total": sum(sum(per.values()) for _, per in rest),
        }
    return {"months": shown, "rows": rows, "others": others}


@router.get("/overview")
def overview_page(
    request: Request,
    user: SignedInDep,
    runtime: RuntimeDep,
    registry: RegistryDep,
    clock: ClockDep,
    scope: Annotated[str, Query(max_length=63)] = "all",
) -> Response:
    reader = admitted(Reader, user.principal)
    with runtime.pool.store() as store:
        every = _scope_list(reader, runtime, registry, store)
        chosen = next((s for s in every if s["name"] == scope), None)
        if chosen is None:
            raise UnprocessableError(
                f"scope: no scope {scope!r}",
                errors=[{"field": "query.scope", "reason": "no such scope", "value": scope}],
            )
        counted = _case_breakdown(reader, runtime, registry, store, scope)
        week_ago = clock() - dt.timedelta(days=7)
        fresh = body_of(
            signals.list_signals(
                reader, runtime, registry, scope=scope, status="new", since=week_ago, limit=20
            )
        ) if runtime.signals.get(scope) is not None else {"signals": [], "total": 0}  # fmt: skip
        fits = store.fits(scope, last=1)
    breakdown = counted.breakdown
    labels = breakdown.months
    visible = visible_products(reader, registry)
    for row in fresh["signals"]:
        row["names"] = names_of(registry, row["product_id"])
    context = {
        "scopes": every,
        "scope": chosen,
        "reports_chart": bar_chart(labels, [breakdown.total[m] for m in labels]),
        "reports_total": sum(breakdown.total.values()),
        "by_month": {
            "pathway": month_table(breakdown.by_pathway, labels),
            "region": month_table(breakdown.by_region, labels),
            "institution": None
            if breakdown.by_institution is None
            else month_table(breakdown.by_institution, labels),
            "counted_at": counted.at.isoformat(),
        },
        "fresh": fresh,
        "by_pathway": _kept(
            "pathways",
            reader,
            registry,
            lambda: sorted(Counter(p.pathway.value for p in visible).items()),
        ),
        "fit": fits[-1] if fits else None,
    }
    return render(request, "overview.html", context, user=user)


PRODUCTS_PER_PAGE = 100


@router.get("/products")
def products_page(
    request: Request,
    user: SignedInDep,
    registry: RegistryDep,
    pathway: Text = None,
    q: Text = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    wanted = _choice("pathway", pathway, [p.value for p in Pathway])
    needle = (q or "").strip().casefold()
    matching = [
        p
        for p in visible_products(user.principal, registry)
        if (wanted is None or p.pathway.value == wanted)
        and (not needle or any(needle in n.casefold() for n in [p.product_id, *p.names]))
    ]
    start = (page - 1) * PRODUCTS_PER_PAGE
    rows = [
        {**p.model_dump(), **names_of(registry, p.product_id)}
        for p in matching[start : start + PRODUCTS_PER_PAGE]
    ]
    context = {
        "products": rows,
        "total": len(matching),
        "pathway": wanted,
        "q": q or "",
        "page": page,
        "pages": max(1, -(-len(matching) // PRODUCTS_PER_PAGE)),
        "pathways": [p.value for p in Pathway],
    }
    return render(request, "products.html", context, user=user)


INBOX_SIZE = 100


def _latest_alerts(
    principal: Principal, store: SqlStore, registry: RegistrySnapshot, wanted: int
) -> list[dict[str, Any]]:
    """The caller's newest alerts, newest first: GET /v1/alerts?order=newest."""
    page = alerts.list_alerts(principal, store, registry, order="newest", limit=wanted)
    return page.model_dump()["alerts"]


@router.get("/alerts")
def alerts_page(
    request: Request,
    user: SignedInDep,
    runtime: RuntimeDep,
    registry: RegistryDep,
) -> Response:
    reader = admitted(Reader, user.principal)
    with runtime.pool.store() as store:
        rows = _latest_alerts(reader, store, registry, INBOX_SIZE)
    for row in rows:
        row["names"] = names_of(registry, row["product_id"])
    return render(request, "alerts.html", {"alerts": rows}, user=user)


@router.get("/alerts/stream", response_class=EventSourceResponse)
async def alerts_stream(
    request: Request, user: SignedInDep, runtime: RuntimeDep
) -> AsyncIterator[ServerSentEvent]:
    """GET /v1/alerts/stream through the session (EventSource sends cookies, not headers);
    the browser resumes with Last-Event-ID after a disconnect, as any client of the API."""
    reader = admitted(Reader, user.principal)
    last = request.headers.get("last-event-id")
    resume = last if last and last.isdigit() and len(last) <= 20 else None
    async for event in alerts.stream_alerts(reader, runtime, last_event_id=resume):
        yield event


# -- subscriptions, keys ---------------------------------------------------------------------


@router.get("/subscriptions")
def subscriptions_page(request: Request, user: SignedInDep, runtime: RuntimeDep) -> Response:
    return render(request, "subscriptions.html", _subscriptions(user, runtime), user=user)


def _subscriptions(user: SignedIn, runtime: Runtime, **extra: Any) -> dict[str, Any]:
    reader = admitted(Reader, user.principal)
    with runtime.pool.store() as store:
        found = subscription_routes.list_subscriptions(reader, store).model_dump()
    return {"subscriptions": found["subscriptions"], "created": None, "problem": None, **extra}


async def _manage(
    request: Request,
    user: SignedIn,
    runtime: Runtime,
    act: Callable[[], dict[str, Any]],
    listing: Callable[..., dict[str, Any]],
    page: str,
) -> Response:
    """A list page's create-or-remove form: the write (through the API's handler), then the
    list again, with what was created shown once, or with the problem named."""
    try:
        outcome = await run_in_threadpool(act)
    except (ApiError, ValueError) as error:
        status = error.status if isinstance(error, ApiError) else 422
        context = await run_in_threadpool(listing, user, runtime, problem=str(error))
        return render(request, f"{page}.html", context, user=user, status=status)
    if not outcome:
        return RedirectResponse(f"/ui/{page}", status_code=303)
    context = await run_in_threadpool(listing, user, runtime, **outcome)
    return render(request, f"{page}.html", context, user=user)


@router.post("/subscriptions")
async def subscriptions_post(
    request: Request, user: SignedInDep, runtime: RuntimeDep, registry: RegistryDep
) -> Response:
    form = await request.form()
    check_csrf(runtime, user.session.nonce, form.get(CSRF_FIELD))
    reader = admitted(Reader, user.principal)
    actor = audit_actor(user.principal)

    def act() -> dict[str, Any]:
        with runtime.pool.store() as store:
            if form.get("delete"):
                found = subscription_routes.owned_subscription(
                    int(str(form["delete"])), reader, store
                )
                subscription_routes.delete_subscription(found, actor, store)
                return {}
            body = SubscriptionIn.model_validate(
                {
                    "url": str(form.get("url") or ""),
                    "filter": {
                        "products": [str(p) for p in form.getlist("products") if p],
                        "measures": [str(m) for m in form.getlist("measures") if m],
                    },
                    "digest": str(form.get("digest") or "") or None,
                }
            )
            created = subscription_routes.create_subscription(
                body, reader, actor, store, registry, runtime
            )
            return {"created": created.model_dump()}

    return await _manage(request, user, runtime, act, _subscriptions, "subscriptions")


_KEY_BODY: TypeAdapter[Any] = TypeAdapter(KeyIn)


@router.get("/keys")
def keys_page(request: Request, user: SignedInDep, runtime: RuntimeDep) -> Response:
    return render(request, "keys.html", _keys(user, runtime), user=user)


def _keys(user: SignedIn, runtime: Runtime, **extra: Any) -> dict[str, Any]:
    admin = admitted(Admin, user.principal)
    with runtime.pool.store() as store:
        found = keys.list_keys(admin, store).model_dump()["keys"]
    roles = [role.value for role in Role]
    return {"keys": found, "created": None, "problem": None, "roles": roles, **extra}


@router.post("/keys")
async def keys_post(request: Request, user: SignedInDep, runtime: RuntimeDep) -> Response:
    form = await request.form()
    check_csrf(runtime, user.session.nonce, form.get(CSRF_FIELD))
    admin = admitted(Admin, user.principal)
    actor = audit_actor(user.principal)

    def act() -> dict[str, Any]:
        with runtime.pool.store() as store:
            if form.get("revoke"):
                keys.revoke_key(str(form["revoke"]), admin, actor, store)
                return {}
            body = _KEY_BODY.validate_python(
                {
                    "role": str(form.get("role") or ""),
                    "org": str(form.get("org") or "").strip() or None,
                    "name": str(form.get("name") or "").strip() or None,
                }
            )
            return {"created": keys.create_key(body, admin, actor, store).model_dump()}

    return await _manage(request, user, runtime, act, _keys, "keys")


# -- hospitals: upload and own cases -------------------------------------------------------------

_UPLOAD_TYPES = {
    ".xml": "application/xml",
    ".json": "application/json",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
}


@router.get("/upload")
def upload_page(request: Request, user: SignedInDep) -> Response:
    admitted(Submitter, user.principal)
    return render(request, "upload.html", {"receipt": None, "problem": None}, user=user)


@router.post("/upload")
async def upload_post(request: Request, user: SignedInDep, runtime: RuntimeDep) -> Response:
    """The file as POST /v1/reports would take it; the answer is the per-record receipt."""
    form = await request.form()
    check_csrf(runtime, user.session.nonce, form.get(CSRF_FIELD))
    submitter = admitted(Submitter, user.principal)
    upload = form.get("file")
    name = str(getattr(upload, "filename", "") or "")
    kind = _UPLOAD_TYPES.get("." + name.rsplit(".", 1)[-1].lower() if "." in name else "")
    if upload is None or isinstance(upload, str) or kind is None:
        problem = f"file: {name or '(none)'!r} must end in .xml, .json, .ndjson or .jsonl"
        context = {"receipt": None, "problem": problem}
        return render(request, "upload.html", context, user=user, status=422)
    data = await upload.read()
    actor = audit_actor(user.principal)
    try:
        receipt = await run_in_threadpool(
            runtime.intake.submit, submitter, actor, kind, iter([data]), None
        )
    except ApiError as error:
        context = {"receipt": None, "problem": str(error)}
        return render(request, "upload.html", context, user=user, status=error.status)
    context = {"receipt": receipt.document(submitter), "problem": None, "file": name}
    return render(request, "upload.html", context, user=user)


@router.get("/cases")
def cases_page(
    request: Request,
    user: SignedInDep,
    runtime: RuntimeDep,
    registry: RegistryDep,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    reader = admitted(CaseReader, user.principal)
    with runtime.pool.store() as store:
        page = body_of(
            cases.list_cases(
                reader, audit_actor(user.principal), runtime, registry, store,
                limit=50, cursor=cursor,
            )
        )  # fmt: skip
    access = cases._access(runtime, reader, registry)
    context = {
        "case_columns": access.columns(),
        "case_rows": [access.flat(c) for c in page["cases"]],
        "next_cursor": page["next_cursor"],
    }
    return render(request, "cases.html", context, user=user)
