"""Counts made under one scope configuration and registry stay consistent with them.

The store remembers the scope configuration its counts were made with. Ingesting under a
different one is refused; `pvsignal rebuild` recounts every case that counts (from the latest
version kept in the store) under the new configuration and the current registry, in one
transaction. Loading products rebuilds too, since a new alias can change which product a
report's text names; loading institutions first renames the owners whose sender name now
resolves to a registered institution, then rebuilds (an institution's region counts for
reports that state none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pvsignal.cases import CaseKey, Contribution, Deltas
from pvsignal.errors import InputError
from pvsignal.ingest import Ingestor, relabelled
from pvsignal.institutions import Institution, InstitutionRegistry
from pvsignal.reports import Report
from pvsignal.scopes import ScopeConfig, load_scope_config
from pvsignal.store import SqlStore

SCOPES_SETTING = "scope_config"


@dataclass(frozen=True)
class RebuildSummary:
    cases: int
    scopes: tuple[str, ...]


def effective_scopes(store: SqlStore, path: Path | None) -> ScopeConfig:
    """The scope configuration to count under: the file's (first use), or the store's.

    Raises
    ------
    InputError
        When the file's configuration differs from the one the store's counts were made with.
    """
    stored = store.setting(SCOPES_SETTING)
    if path is None and stored is not None:
        return ScopeConfig.model_validate_json(stored)
    config = load_scope_config(path)
    if stored is None:
        store.set_setting(SCOPES_SETTING, config.model_dump_json())
    elif not ScopeConfig.model_validate_json(stored).counts_like(config):
        raise InputError(
            f"scope config {str(path)!r} differs from the one this store's counts were made "
            f"with; run `pvsignal rebuild --scope-config {path}` to recount under it"
        )
    elif stored != config.model_dump_json():
        # Counted alike, scored or monitored differently (priors, stratify, monitoring): the
        # store keeps the latest.
        store.set_setting(SCOPES_SETTING, config.model_dump_json())
    return config


def rebuild(store: SqlStore, scopes: ScopeConfig) -> RebuildSummary:
    """Recount every counting case under ``scopes``, the store's registry and terminology,
    in one transaction serialised with batch writers (a batch written meanwhile would
    otherwise lose its counts to the replacement)."""
    ingestor = Ingestor(store, scopes)
    contributions: dict[CaseKey, Contribution] = {}
    with store.batch():
        for owner, case_id, report_json in store.active_reports():
            contribution = ingestor.contribution(Report.model_validate_json(report_json))
            contributions[CaseKey(owner, case_id)] = contribution
        labels = ingestor.terms.labels
        changed = labels.changes(store.claim_event_labels(labels.unclaimed()))
        if changed:  # a writer recorded them since the engine loaded its labels: theirs win
            contributions = {k: relabelled(c, changed) for k, c in contributions.items()}
        deltas = Deltas()
        for contribution in contributions.values():
            deltas.add(contribution, +1)
        store.replace_counts(deltas, contributions)
        store.set_setting(SCOPES_SETTING, scopes.model_dump_json())
    return RebuildSummary(len(contributions), tuple(s.name for s in scopes.all_scopes()))


def register_institutions(store: SqlStore, institutions: list[Institution]) -> dict[str, str]:
    """Add or replace institutions in the store's registry: first checked against it (a name
    of another institution is an InputError), then the cases sent under one of their names
    are moved to their ids (refused whole when two cases would merge), then saved. Returns
    what was renamed; the caller recounts (a region now known counts for reports)."""
    registry = InstitutionRegistry(store.load_institutions())
    for institution in institutions:
        registry.add(institution)
    renamed = rename_owners(store, registry)
    store.save_institutions(institutions)
    return renamed


def rename_owners(store: SqlStore, institutions: InstitutionRegistry) -> dict[str, str]:
    """Give every case owner its registered institution id, where the registry now resolves
    the name it was sent under; return what was renamed."""
    renamed = {}
    for owner in store.owners():
        canonical = institutions.canonical(owner)
        if canonical != owner:
            renamed[owner] = canonical
    if renamed:
        store.rename_owners(renamed)
    return renamed
