"""The JSON renderer: lines of the stream as wire-format reports.

Per chunk, ``_Renderer`` gathers each line's product and reaction slots with numpy, shows the
content of the version the line carries (a follow-up's additions and corrections withheld from
earlier versions), assembles dicts from cached, shared fragments and lets orjson serialise them;
lines marked malformed go through ``_malform``. Fragments are never mutated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson

from pvsignal.simulate.cases import (
    _ADD_PRODUCT,
    _ADD_REACTION,
    _CORRECT_PT,
    _DETAILS,
    _FORMS,
    _OUTCOMES,
    _ROLES,
    _SERIOUS,
    _SEXES,
    _UNKNOWN,
    _Cases,
)
from pvsignal.simulate.catalogue import UNREGISTERED_NAMES, _Catalogue, _variant
from pvsignal.simulate.institutions import _COUNTRIES, _REGIONS, _Identities, _Institutions
from pvsignal.simulate.malformed import _malform
from pvsignal.simulate.terms import _Terms


class _Cache(dict):
    def __init__(self, make: Callable[[int], object]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: int) -> object:
        value = self[key] = self._make(key)
        return value


def _gather(start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slot indices of each line's run, concatenated, and each line's offset (n + 1 long)."""
    offsets = np.zeros(length.size + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    flat = np.repeat(start - offsets[:-1], length) + np.arange(offsets[-1])
    return flat, offsets


class _Renderer:
    def __init__(
        self,
        cat: _Catalogue,
        terms: _Terms,
        cases: _Cases,
        ids: _Identities,
        inst: _Institutions,
        lines: np.ndarray,
        days: list[str],
    ) -> None:
        self._cat, self._terms, self._cases = cat, terms, cases
        self._ids, self._inst, self._lines, self._days = ids, inst, lines, days
        self._n_cases = cases.size
        self._products = _Cache(self._product)
        self._reactions = _Cache(self._reaction)
        self._patients = _Cache(self._patient)
        self._senders = _Cache(self._sender)
        self._prefixes = _Cache(self._prefix)

    # Fragments, built once per distinct key.

    def _product(self, key: int) -> dict:
        key, role = divmod(key, len(_ROLES))
        product, form = divmod(key, _FORMS)
        entry: dict[str, object]
        if product >= self._cat.size:
            entry = {"name": UNREGISTERED_NAMES[product - self._cat.size]}
        else:
            registered = self._cat.products[product]
            names = registered.names
            if form == 0:
                entry = {"product_id": registered.product_id}
            elif form == 1:
                entry = {"product_id": registered.product_id, "name": names[0]}
            elif form < 6:
                entry = {"name": names[(form - 2) % len(names)]}
            else:  # a variant of an English name (Chinese has no case or width to vary)
                entry = {"name": _variant(names[1 + form % 2], form + product)}
        entry["role"] = _ROLES[role].value
        return entry

    def _reaction(self, key: int) -> dict:
        key, outcome = divmod(key, len(_OUTCOMES))
        key, serious = divmod(key, len(_SERIOUS))
        pt, coded = divmod(key, 2)
        entry: dict[str, object] = {"pt": self._terms.names[pt]}
        if coded:
            entry["pt_code"] = self._terms.codes[pt]
        if _SERIOUS[serious] is not None:
            entry["serious"] = _SERIOUS[serious]
        if _OUTCOMES[outcome] is not None:
            entry["outcome"] = _OUTCOMES[outcome].value
        return entry

    def _patient(self, key: int) -> dict:
        age, sex = divmod(key, len(_SEXES))
        entry: dict[str, object] = {}
        if age > 0:
            tenths = age - 1
            entry["age_years"] = tenths // 10 if tenths % 10 == 0 else tenths / 10
        if _SEXES[sex] is not None:
            entry["sex"] = _SEXES[sex]
        return entry

    def _sender(self, key: int) -> dict:
        entry: dict[str, object] = {"type": self._inst.types[key].value}
        if self._inst.codes[key] is not None:
            entry["institution_id"] = self._inst.codes[key]
        return entry

    def _prefix(self, key: int) -> str:
        country, sender = divmod(key, len(self._inst.codes))
        return f"{_COUNTRIES[country]}-{self._inst.prefixes[sender]}-"

    # Lines

    def render(self, lo: int, hi: int) -> list[bytes]:
        lines, cases, ids = self._lines, self._cases, self._ids
        part = slice(lo, hi)
        ident = lines["ident"][part]
        state = lines["state"][part]
        bare = lines["bare"][part]
        row = ids.content[ident]
        versions = cases.versions[row]
        change = cases.change[row]
        pending1 = (state < 2) & (versions >= 2)
        pending2 = (state < 3) & (versions >= 3)

        def pending(kind: int) -> np.ndarray:
            return (pending1 & (change[:, 0] == kind)) | (pending2 & (change[:, 1] == kind))

        drop_products = (pending1 & (change[:, 0] == _ADD_PRODUCT)).astype(np.int64) + (
            pending2 & (change[:, 1] == _ADD_PRODUCT)
        )
        drop_reactions = (pending1 & (change[:, 0] == _ADD_REACTION)).astype(np.int64) + (
            pending2 & (change[:, 1] == _ADD_REACTION)
        )
        hidden = pending(_DETAILS)
        products, p_off = self._product_entries(
            ident, row, np.where(bare, 0, cases.n_prod[row] - drop_products)
        )
        reactions, r_off = self._reaction_entries(
            row, np.where(bare, 0, cases.n_react[row] - drop_reactions), pending(_CORRECT_PT),
            hidden,
        )  # fmt: skip
        age = np.where(hidden, -1, cases.age[row]).astype(np.int64)
        patients = self._lookup(self._patients, (age + 1) * len(_SEXES) + cases.sex[row])
        n_inst = len(self._inst.codes)
        senders = self._lookup(self._senders, ids.inst[ident])
        country = ids.country[ident].astype(np.int64)
        prefixes = self._lookup(self._prefixes, country * n_inst + ids.inst[ident])
        duplicate_of = lines["duplicate_of"][part]
        dup_prefix = self._lookup(
            self._prefixes,
            np.where(duplicate_of >= 0, ids.country[duplicate_of].astype(np.int64) * n_inst
                     + ids.inst[duplicate_of], 0),
        )  # fmt: skip
        region = ids.region[ident]
        columns = zip(
            ident.tolist(),
            lines["version"][part].tolist(),
            lines["received"][part].tolist(),
            lines["nullified"][part].tolist(),
            bare.tolist(),
            duplicate_of.tolist(),
            prefixes,
            dup_prefix,
            senders,
            country.tolist(),
            region.tolist(),
            patients,
            p_off.tolist(),
            p_off[1:].tolist(),
            r_off.tolist(),
            r_off[1:].tolist(),
            lines["malformed"][part].tolist(),
            lines["aux"][part].tolist(),
            strict=False,
        )
        days, dumps, out = self._days, orjson.dumps, []
        for (case, version, received, nullified, no_content, dup, prefix, dprefix, sender,
             country, reg, patient, p0, p1, r0, r1, broken, aux) in columns:  # fmt: skip
            case_id = f"{prefix}{case:08d}"
            report: dict[str, object] = {
                "case_id": case_id,
                "report_id": f"{case_id}-V{version}",
                "version": version,
                "received": days[received],
            }
            if nullified:
                report["nullified"] = True
            if dup >= 0:
                report["duplicate_of_ids"] = [f"{dprefix}{dup:08d}"]
            report["sender"] = sender
            report["country"] = _COUNTRIES[country]
            if reg >= 0:
                report["region"] = _REGIONS[reg]
            if not no_content:
                report["patient"] = patient
                report["products"] = products[p0:p1]
                report["reactions"] = reactions[r0:r1]
            out.append(dumps(report) if broken < 0 else _malform(report, broken, aux))
        return out

    @staticmethod
    def _lookup(cache: _Cache, keys: np.ndarray) -> list:
        return [cache[k] for k in keys.tolist()]

    def _product_entries(
        self, ident: np.ndarray, row: np.ndarray, length: np.ndarray
    ) -> tuple[list, np.ndarray]:
        cases = self._cases
        flat, offsets = _gather(cases.p_start[row], length)
        form = cases.form[flat].astype(np.int64)
        # A duplicate case comes from another sender, who writes names where the first wrote ids.
        second = np.repeat(ident >= self._n_cases, length)
        form = np.where(second & (form < 2), 2 + (cases.prod[flat] + form) % 4, form)
        keys = (cases.prod[flat].astype(np.int64) * _FORMS + form) * len(_ROLES) + cases.role[flat]
        return self._lookup(self._products, keys), offsets

    def _reaction_entries(
        self, row: np.ndarray, length: np.ndarray, vague: np.ndarray, hidden: np.ndarray
    ) -> tuple[list, np.ndarray]:
        cases, terms = self._cases, self._terms
        flat, offsets = _gather(cases.r_start[row], length)
        pt = cases.pt[flat].astype(np.int64)
        first = offsets[:-1][vague & (length > 0)]
        pt[first] = terms.provisional[pt[first]]
        outcome = np.where(np.repeat(hidden, length), _UNKNOWN, cases.outcome[flat])
        keys = ((pt * 2 + cases.coded[flat]) * len(_SERIOUS) + cases.serious[flat]) * len(
            _OUTCOMES
        ) + outcome
        return self._lookup(self._reactions, keys), offsets
