"""Schema migrations, in order; each entry is applied once and recorded in schema_version.

The statements are written once; the dialects differ in the type of generated keys and in
SQLite's WITHOUT ROWID for the count tables (small rows under a composite key: one B-tree
instead of a table plus an index, so each upsert touches half the pages).
"""

from __future__ import annotations

_V1 = """
CREATE TABLE products (product_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    version INTEGER,
    report_id TEXT,
    duplicate_of TEXT,
    contribution TEXT,
    report TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE pair_counts (
    scope TEXT NOT NULL, product TEXT NOT NULL, event TEXT NOT NULL, a INTEGER NOT NULL,
    PRIMARY KEY (scope, product, event)
) {without_rowid};
CREATE TABLE product_counts (
    scope TEXT NOT NULL, stratum TEXT NOT NULL, product TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, stratum, product)
) {without_rowid};
CREATE TABLE event_counts (
    scope TEXT NOT NULL, stratum TEXT NOT NULL, event TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, stratum, event)
) {without_rowid};
CREATE TABLE scope_totals (
    scope TEXT NOT NULL, stratum TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, stratum)
) {without_rowid};
CREATE TABLE rejects (
    id {serial},
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    location TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT
);
CREATE TABLE consumer_offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition)
) {without_rowid};
CREATE TABLE fits (
    id {serial},
    scope TEXT NOT NULL,
    fitted_at TEXT NOT NULL,
    report TEXT NOT NULL
)
"""

_V2 = """
CREATE TABLE store_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE signal_states (
    scope TEXT NOT NULL, product TEXT NOT NULL, event TEXT NOT NULL, measure TEXT NOT NULL,
    status TEXT NOT NULL, since TEXT NOT NULL, reference DOUBLE PRECISION NOT NULL,
    failures INTEGER NOT NULL, last_a INTEGER NOT NULL, last_level DOUBLE PRECISION,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, product, event, measure)
) {without_rowid};
CREATE TABLE signal_history (
    id {serial},
    scope TEXT NOT NULL, product TEXT NOT NULL, event TEXT NOT NULL, at TEXT NOT NULL,
    a INTEGER NOT NULL, statistics TEXT NOT NULL
);
CREATE INDEX signal_history_pair ON signal_history (scope, product, event, id);
CREATE TABLE alerts (
    alert_id {serial},
    created_at TEXT NOT NULL,
    scope TEXT NOT NULL, product TEXT NOT NULL, event TEXT NOT NULL, measure TEXT NOT NULL,
    transition TEXT NOT NULL, mah_id TEXT, payload TEXT NOT NULL, published_at TEXT
);
CREATE INDEX alerts_unpublished ON alerts (published_at, alert_id);
CREATE INDEX alerts_pair ON alerts (scope, product, event, alert_id)
"""

_V3 = """
CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, role TEXT NOT NULL, org TEXT,
    name TEXT, created_at TEXT NOT NULL, revoked_at TEXT
);
CREATE TABLE subscriptions (
    subscription_id {serial},
    owner_role TEXT NOT NULL, owner_org TEXT, url TEXT NOT NULL, secret TEXT NOT NULL,
    filter TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT
);
CREATE TABLE deliveries (
    delivery_id {serial},
    subscription_id BIGINT NOT NULL, alert_id BIGINT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_at TEXT, last_error TEXT, last_status INTEGER,
    created_at TEXT NOT NULL, delivered_at TEXT,
    UNIQUE (subscription_id, alert_id)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE receipts (
    receipt_id TEXT PRIMARY KEY, org TEXT, role TEXT NOT NULL, submitted_at TEXT NOT NULL,
    content_type TEXT NOT NULL, records INTEGER NOT NULL, summary TEXT NOT NULL,
    results TEXT NOT NULL
);
CREATE INDEX receipts_org ON receipts (org, submitted_at);
CREATE TABLE outbox_cursors (consumer TEXT PRIMARY KEY, alert_id BIGINT NOT NULL);
CREATE INDEX cases_updated_at ON cases (updated_at)
"""

# The change token counts batch writes (one row per batch) instead of indexing every case's
# write time: that index was rewritten across its width by every batch of a bulk import.
_V4 = """
DROP INDEX cases_updated_at
"""

# Case versions from E2B(R3) are C.1.5 timestamps (YYYYMMDDhhmmss): 64-bit. SQLite's
# INTEGER always is; PostgreSQL's is 32-bit, so there the column is widened.
_V5 = """
{widen_case_version}
"""

# Cases are owned: (owner, case_id) is a case's identity, so one organisation's case id never
# touches another's. Owners of existing cases are assigned after this migration from their
# stored report's sender organisation (see SqlStore._assign_owners). A duplicate link across
# owners is a suspicion a regulator decides; institutions are a registry like products; a
# submission's Idempotency-Key is kept with its receipt.
_V6 = """
CREATE TABLE owned_cases (
    owner TEXT NOT NULL,
    case_id TEXT NOT NULL,
    status TEXT NOT NULL,
    version BIGINT,
    report_id TEXT,
    duplicate_of TEXT,
    duplicate_of_owner TEXT,
    contribution TEXT,
    report TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (owner, case_id)
);
INSERT INTO owned_cases (owner, case_id, status, version, report_id, duplicate_of,
    contribution, report, updated_at)
SELECT '', case_id, status, version, report_id, duplicate_of, contribution, report, updated_at
FROM cases;
DROP TABLE cases;
ALTER TABLE owned_cases RENAME TO cases;
CREATE INDEX cases_case_id ON cases (case_id);
CREATE TABLE suspected_duplicates (
    suspicion_id {serial},
    survivor_owner TEXT NOT NULL, survivor_case_id TEXT NOT NULL,
    suspect_owner TEXT NOT NULL, suspect_case_id TEXT NOT NULL,
    status TEXT NOT NULL, found_at TEXT NOT NULL,
    decided_by TEXT, decided_at TEXT, note TEXT,
    UNIQUE (survivor_owner, survivor_case_id, suspect_owner, suspect_case_id)
);
CREATE INDEX suspected_duplicates_status ON suspected_duplicates (status, suspicion_id);
CREATE TABLE institutions (institution_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
ALTER TABLE receipts ADD COLUMN idempotency_key TEXT;
ALTER TABLE receipts ADD COLUMN body_digest TEXT;
CREATE UNIQUE INDEX receipts_idempotency ON receipts (idempotency_key)
"""


# Alerts per pair, not per measure; digests. An alert's ``measure`` is "*" from here on, and
# ``changes`` lists what moved as ",measure:transition," items (filters match one item with
# LIKE; earlier per-measure alerts are given theirs). A digest subscription collects its
# alerts in ``digest_items`` (one row per subscription and alert: each alert is listed once);
# closing a period makes one delivery (``period_start``/``period_end`` set, ``alert_id`` the
# last alert it lists) and claims its items by setting their ``delivery_id``.
_V7 = """
ALTER TABLE alerts ADD COLUMN changes TEXT;
UPDATE alerts SET changes = ',' || measure || ':' || transition || ',';
CREATE INDEX alerts_created ON alerts (created_at);
ALTER TABLE subscriptions ADD COLUMN digest TEXT;
ALTER TABLE deliveries ADD COLUMN period_start TEXT;
ALTER TABLE deliveries ADD COLUMN period_end TEXT;
CREATE TABLE digest_items (
    subscription_id BIGINT NOT NULL, alert_id BIGINT NOT NULL, delivery_id BIGINT,
    PRIMARY KEY (subscription_id, alert_id)
);
CREATE INDEX digest_items_delivery ON digest_items (delivery_id)
"""

# Trends and case series. Counts per received month (``YYYY-MM``, or "unknown" for reports
# stating no C.1.5), kept beside the running sums by the same batch write: per pair, per
# product and per event within a stratum, and in total per stratum (quarters and years are
# sums of months). A case's received date is a column, for listings by date. Every valid
# version a batch applies is kept in ``case_versions`` (its outcome and where it came from):
# history exists from this migration on; earlier versions were never stored. The period
# counts of existing cases are backfilled right after this migration from their stored
# reports (see SqlStore._backfill_periods), in the same transaction.
_V8 = """
CREATE TABLE pair_period_counts (
    scope TEXT NOT NULL, product TEXT NOT NULL, event TEXT NOT NULL, period TEXT NOT NULL,
    a INTEGER NOT NULL,
    PRIMARY KEY (scope, product, event, period)
) {without_rowid};
CREATE TABLE product_period_counts (
    scope TEXT NOT NULL, product TEXT NOT NULL, stratum TEXT NOT NULL, period TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (scope, product, stratum, period)
) {without_rowid};
CREATE TABLE event_period_counts (
    scope TEXT NOT NULL, event TEXT NOT NULL, stratum TEXT NOT NULL, period TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (scope, event, stratum, period)
) {without_rowid};
CREATE TABLE total_period_counts (
    scope TEXT NOT NULL, stratum TEXT NOT NULL, period TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, stratum, period)
) {without_rowid};
ALTER TABLE cases ADD COLUMN received TEXT;
CREATE TABLE case_versions (
    id {serial},
    owner TEXT NOT NULL, case_id TEXT NOT NULL, version BIGINT NOT NULL, report_id TEXT,
    received TEXT, outcome TEXT NOT NULL, location TEXT NOT NULL, recorded_at TEXT NOT NULL
);
CREATE INDEX case_versions_case ON case_versions (owner, case_id, id)
"""

# Signal reviews (one per scope, product, PT and organisation; the document holds comments,
# links and history; the columns what the work queue filters on) and the audit trail: rows
# chained by hash (see pvsignal.audit) and its head, the one row every append updates first,
# which serialises appends and records the tail (rows cut from the end are found there).
_V9 = """
CREATE TABLE reviews (
    scope TEXT NOT NULL, product TEXT NOT NULL, event TEXT NOT NULL, org TEXT NOT NULL,
    status TEXT NOT NULL, assignee TEXT, due_at TEXT, shared INTEGER NOT NULL,
    version BIGINT NOT NULL, doc TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, product, event, org)
);
CREATE INDEX reviews_queue ON reviews (org, status, due_at);
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, org TEXT, role TEXT NOT NULL,
    action TEXT NOT NULL, object_type TEXT NOT NULL, object_id TEXT NOT NULL,
    before TEXT, after TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{genesis}')
"""

# Terminology: every MedDRA release loaded, one row per (version, language), its parsed
# content as JSON (pvsignal.terminology.store); and the label each normalised event text
# counts under when no dictionary is loaded (the first spelling recorded).
_V10 = """
CREATE TABLE meddra_releases (
    version TEXT NOT NULL, language TEXT NOT NULL, loaded_at TEXT NOT NULL,
    source TEXT NOT NULL, content TEXT NOT NULL,
    PRIMARY KEY (version, language)
);
CREATE TABLE event_labels (normal TEXT PRIMARY KEY, label TEXT NOT NULL)
"""
# Active monitoring: exposures (one row per owner and exposure id, its latest version, resolved:
# product id, canonical institution, age band and sex) and the state of each sequential test
# (a JSON document per scope, product and PT; its lifecycle is a signal_states row with
# measure "maxsprt").
_V11 = """
CREATE TABLE exposures (
    owner TEXT NOT NULL, exposure_id TEXT NOT NULL, version BIGINT NOT NULL,
    status TEXT NOT NULL, product TEXT, institution TEXT, start_date TEXT, period TEXT NOT NULL,
    age_years DOUBLE PRECISION, age_band TEXT NOT NULL, sex TEXT NOT NULL,
    patients BIGINT NOT NULL, doses BIGINT, patient_days DOUBLE PRECISION,
    doc TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (owner, exposure_id)
);
CREATE INDEX exposures_product ON exposures (product, status);
CREATE TABLE sequential_tests (
    scope TEXT NOT NULL, product TEXT NOT NULL, event TEXT NOT NULL, state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, product, event)
)
"""

# Incremental detection and detection shards. Every running count carries the batch that last
# changed it (``seq``, the ``batches_written`` mark of that batch's transaction), so a detector
# reads only the counts changed since the mark it last read, with their current values (see
# SqlStore.count_changes). A detection shard (K of N, owning a hash range of products) holds a
# lease; each acquisition raises its ``epoch``, and a shard's write of signal states is refused
# unless it still holds the lease with the epoch it acquired (fencing, as batches are fenced by
# their offsets).
_V12 = """
ALTER TABLE pair_counts ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE product_counts ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE event_counts ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE scope_totals ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX pair_counts_seq ON pair_counts (scope, seq);
CREATE INDEX product_counts_seq ON product_counts (scope, seq);
CREATE INDEX event_counts_seq ON event_counts (scope, seq);
CREATE TABLE detection_leases (
    shard TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL, expires_at TEXT NOT NULL
)
"""

# Dashboard sessions ended by signing out. A session is a sealed cookie (api.ui.session); its
# sign-out is recorded here (a digest of its nonce, until the cookie would have expired) so
# that a copy of the cookie is refused by every process sharing the store. And an MAH's
# alerts newest first (GET /v1/alerts?order=newest): its products' alerts, each product's a
# range of this index, instead of a scan of every alert from the newest back.
_V13 = """
CREATE TABLE ended_sessions (digest TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);
CREATE INDEX ended_sessions_expiry ON ended_sessions (expires_at);
CREATE INDEX alerts_product ON alerts (product, alert_id)
"""

# The dashboard's overview: a scope's cases per received month by where they were reported
# (province-level region and sender institution, "" when the report states none) and by the
# products they count there (a JSON array, sorted), kept by the same batch write as the other
# counts. Which products a reader may see, and their pathways, are applied when it is read
# (pvsignal.case_access.case_breakdown): nothing here depends on the registry. The counts of
# existing cases, and the place in their contributions, are backfilled right after this
# migration from their stored reports (see SqlStore._backfill_places), in the same transaction.
_V14 = """
CREATE TABLE place_counts (
    scope TEXT NOT NULL, period TEXT NOT NULL, region TEXT NOT NULL, institution TEXT NOT NULL,
    products TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (scope, period, region, institution, products)
) {without_rowid}
"""

MIGRATIONS = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13, _V14)


def migrations(
    serial: str, without_rowid: str = "", widen_case_version: str = ""
) -> tuple[str, ...]:
    """The migrations with the dialect's key type, table options and alterations filled in."""
    fills = {
        "{serial}": serial,
        "{without_rowid}": without_rowid,
        "{widen_case_version}": widen_case_version,
        "{genesis}": "0" * 64,
    }
    filled = []
    for migration in MIGRATIONS:
        for mark, text in fills.items():
            migration = migration.replace(mark, text)
        filled.append(migration)
    return tuple(filled)
