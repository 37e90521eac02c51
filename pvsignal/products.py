"""The product registry: ids, names and aliases in any language, kind, pathway and MAH.

A report names a product by registry id or by text; text resolves through the aliases after
Unicode NFKC normalisation, case folding and whitespace collapsing (so full-width and
half-width forms, capitals and stray spaces all match). A product the registry does not know
is still counted, under an ``unregistered:`` id made from its normalised name: a report is
never dropped because its product is not registered.

The registry refuses names that could mislead: a name holding an invisible or format character
(zero-width space and joiners, bidi controls, soft hyphen, fillers; Unicode category Cf and a few
blank letters), and a name that looks like a name of another MAH's product — equal after NFKC,
case folding and mapping look-alike letters (Cyrillic and Greek letters drawn like Latin ones,
digits like letters) to one skeleton, in the spirit of Unicode TR39's confusable skeletons.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from pvsignal.errors import InputError
from pvsignal.registryfile import load_registry_file
from pvsignal.reports import Product

UNREGISTERED = "unregistered:"

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Kind(StrEnum):
    drug = "drug"
    biologic = "biologic"
    vaccine = "vaccine"
    device = "device"
    cell_gene_therapy = "cell_gene_therapy"


class Pathway(StrEnum):
    innovative = "innovative"
    lecheng_special_import = "lecheng_special_import"
    gba_hkmacao_connect = "gba_hkmacao_connect"
    rare_disease_pilot = "rare_disease_pilot"
    conventional = "conventional"


# Invisible characters that are not of category Cf: blank letters and the combining grapheme
# joiner, variation selectors (they change nothing a reader sees in a product name).
_INVISIBLE = frozenset("\u034f\u115f\u1160\u3164\uffa0\u2800\u180e") | frozenset(
    map(chr, [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])
)


# The same characters as a regular-expression class (for the schema: Python, Rust and JSON
# Schema engines read these escapes alike); tests check it matches visible_text exactly.
HIDDEN_CLASS = (
    "\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u0600-\\u0605\\u061c"
    "\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u115f-\\u1160\\u180e"
    "\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\u2800"
    "\\u3164\\ue000-\\uf8ff\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff9-\\ufffb"
    "\\U000110bd\\U000110cd\\U00013430-\\U00013438\\U0001bca0-\\U0001bca3"
    "\\U0001d173-\\U0001d17a\\U000e0001\\U000e0020-\\U000e007f"
    "\\U000e0100-\\U000e01ef\\U000f0000-\\U000ffffd\\U00100000-\\U0010fffd"
)
NAME_PATTERN = f"^[^{HIDDEN_CLASS}]*[^{HIDDEN_CLASS}\\s][^{HIDDEN_CLASS}]*$"


def visible_text(text: str) -> str:
    """``text`` if every character shows; else ValueError naming the first hidden one."""
    for character in text:
        if character in _INVISIBLE or unicodedata.category(character) in ("Cf", "Cc", "Co"):
            name = unicodedata.name(character, "unnamed")
            raise ValueError(
                f"{text!r} holds an invisible or format character U+{ord(character):04X} ({name})"
            )
    return text


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(visible_text),
    Field(json_schema_extra={"pattern": NAME_PATTERN}),  # documents what visible_text enforces
]


class RegisteredProduct(BaseModel):
    """One registry entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: Identifier
    names: list[Name] = Field(
        min_length=1, description="names and aliases, any language; the first is the display name"
    )
    kind: Kind
    pathway: Pathway
    mah_id: Identifier = Field(description="the marketing-authorisation holder")
    approved: dt.date | None = Field(default=None, description="permit or approval date")


@dataclass(frozen=True, slots=True)
class ResolvedProduct:
    """The product a report's entry counts as."""

    product_id: str
    registered: bool
    kind: Kind | None = None
    pathway: Pathway | None = None
    mah_id: str | None = None


_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=65_536)
def normalize_name(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the key aliases are matched on (cached: report
    streams repeat the same few thousand names)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


# Letters of other scripts drawn like Latin ones, and digits like letters (a subset of Unicode
# TR39 confusables.txt: the look-alikes of the Latin alphabet in Cyrillic and Greek).
_LOOK_ALIKES = str.maketrans(
    {
        **dict.fromkeys("аɑα", "a"),
        **dict.fromkeys("вβ", "b"),
        **dict.fromkeys("сϲ", "c"),
        **dict.fromkeys("ԁ", "d"),
        **dict.fromkeys("еε", "e"),
        **dict.fromkeys("ɡ", "g"),
        **dict.fromkeys("һ", "h"),
        **dict.fromkeys("іιı1ǀ", "i"),
        **dict.fromkeys("ј", "j"),
        **dict.fromkeys("кκ", "k"),
        **dict.fromkeys("ӏ", "l"),
        **dict.fromkeys("м", "m"),
        **dict.fromkeys("пη", "n"),
        **dict.fromkeys("оοσ0", "o"),
        **dict.fromkeys("рρ", "p"),
        **dict.fromkeys("ԛ", "q"),
        **dict.fromkeys("г", "r"),
        **dict.fromkeys("ѕ5", "s"),
        **dict.fromkeys("тτ", "t"),
        **dict.fromkeys("υμ", "u"),
        **dict.fromkeys("νѵ", "v"),
        **dict.fromkeys("ԝω", "w"),
        **dict.fromkeys("хχ", "x"),
        **dict.fromkeys("уγ", "y"),
        **dict.fromkeys("ᴢ", "z"),
    }
)


def skeleton(text: str) -> str:
    """The form two names share when they look alike: normalised, look-alikes mapped to
    Latin letters, and 'l' read as 'i' (so 'a1pha', 'aIpha' and 'alpha' agree)."""
    return normalize_name(text).translate(_LOOK_ALIKES).replace("l", "i").replace("rn", "m")


class Registry:
    """Products by id and by alias; resolves report entries, registered or not."""

    def __init__(self, products: Iterable[RegisteredProduct] = ()) -> None:
        self._by_id: dict[str, RegisteredProduct] = {}
        self._by_alias: dict[str, str] = {}
        self._resolved: dict[tuple[str | None, str | None], ResolvedProduct] = {}
        # skeleton -> {product id: the name with that skeleton}
        self._by_skeleton: dict[str, dict[str, str]] = {}
        for product in products:
            self.add(product)

    def add(self, product: RegisteredProduct) -> None:
        """Add or replace a product; an alias claimed by another product, or one that looks
        like a name of another MAH's product, is an error."""
        for name in (product.product_id, *product.names):
            key = normalize_name(name)
            owner = self._by_alias.get(key)
            if owner is not None and owner != product.product_id:
                raise InputError(
                    f"product {product.product_id!r}: alias {name!r} already names {owner!r}"
                )
        for name in product.names:  # names people read; ids are codes, compared exactly
            for other_id, other_name in self._by_skeleton.get(skeleton(name), {}).items():
                other = self._by_id[other_id]
                if other_id != product.product_id and other.mah_id != product.mah_id:
                    raise InputError(
                        f"product {product.product_id!r}: names: {name!r} looks like "
                        f"{other_name!r}, a name of product {other_id!r} of {other.mah_id!r}"
                    )
        self._resolved.clear()
        previous = self._by_id.get(product.product_id)
        if previous is not None:
            for name in (previous.product_id, *previous.names):
                self._by_alias.pop(normalize_name(name), None)
            for name in previous.names:
                self._by_skeleton.get(skeleton(name), {}).pop(previous.product_id, None)
        self._by_id[product.product_id] = product
        for name in (product.product_id, *product.names):
            self._by_alias[normalize_name(name)] = product.product_id
        for name in product.names:
            self._by_skeleton.setdefault(skeleton(name), {})[product.product_id] = name

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(self._by_id.values())

    def get(self, product_id: str) -> RegisteredProduct | None:
        return self._by_id.get(product_id)

    def resolve(self, entry: Product) -> ResolvedProduct:
        """The registered product the entry names (by id, else by name), or an unregistered id."""
        key = (entry.product_id, entry.name)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = self._lookup(entry)
        return found

    def _lookup(self, entry: Product) -> ResolvedProduct:
        for text in (entry.product_id, entry.name):
            if text is None:
                continue
            product_id = self._by_alias.get(normalize_name(text))
            if product_id is not None:
                found = self._by_id[product_id]
                return ResolvedProduct(product_id, True, found.kind, found.pathway, found.mah_id)
        key = entry.name if entry.name is not None else entry.product_id
        return ResolvedProduct(UNREGISTERED + normalize_name(key), False)


def load_products(path: Path) -> list[RegisteredProduct]:
    """Read a registry file: YAML (a list of products) or CSV (names separated by '|').

    Raises
    ------
    InputError
        Naming the file, the entry (YAML index or CSV line), the field and the value.
    """
    return load_registry_file(path, RegisteredProduct, "products", ("names",))
