"""The registry refuses names that hide characters and look-alikes of another MAH's names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pvsignal.cli import main
from pvsignal.errors import InputError
from pvsignal.products import RegisteredProduct, Registry, load_products, skeleton


def product(product_id: str, names: list[str], mah_id: str) -> RegisteredProduct:
    return RegisteredProduct(
        product_id=product_id, names=names, kind="drug", pathway="innovative", mah_id=mah_id
    )


@pytest.mark.parametrize(
    "hidden", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u3164"]
)
def test_names_with_invisible_characters_are_refused(hidden):
    with pytest.raises(ValidationError) as refused:
        product("A1", ["alpha", f"alpha{hidden}mab"], "MAH-A")
    [error] = refused.value.errors()
    assert error["loc"] == ("names", 1)
    assert f"U+{ord(hidden):04X}" in error["msg"]


def test_a_registry_file_with_a_zero_width_name_names_entry_field_and_value(tmp_path):
    path = tmp_path / "products.yaml"
    path.write_text(
        "- {product_id: A1, names: [alphamab], kind: drug, pathway: innovative, mah_id: MAH-A}\n"
        '- {product_id: B1, names: ["beta\\u200bnib"], kind: drug, pathway: innovative,'
        " mah_id: MAH-B}\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as refused:
        load_products(path)
    message = str(refused.value)
    assert "entry 1" in message and "names.0" in message and "U+200B" in message
    assert "'beta\\u200bnib'" in message


@pytest.mark.parametrize(
    "look_alike",
    [
        "аlphamab",  # Cyrillic а
        "ALPHAMAB",  # case alone is already the same alias
        "a1phamab",
        "alphаmаb",
        "ａｌｐｈａｍａｂ",  # full width
        "alpharnab",
    ],
)
def test_a_look_alike_of_another_mahs_name_is_refused(look_alike):
    registry = Registry([product("A1", ["alphamab"], "MAH-A")])
    with pytest.raises(InputError) as refused:
        registry.add(product("B1", ["betanib", look_alike], "MAH-B"))
    assert repr(look_alike) in str(refused.value) and "'A1'" in str(refused.value)
    assert registry.get("B1") is None


def test_look_alikes_within_one_mah_and_unrelated_names_are_kept():
    registry = Registry([product("A1", ["alphamab"], "MAH-A")])
    registry.add(product("A2", ["alphamab-sc", "аlphamab sc"], "MAH-A"))
    registry.add(product("B1", ["alphamib"], "MAH-B"))
    # Replacing a product with its own names again is no conflict.
    registry.add(product("A1", ["alphamab", "阿尔法单抗"], "MAH-A"))
    assert skeleton("Аlрhа") == skeleton("alpha")


def test_products_load_refuses_a_look_alike_of_a_stored_product(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("product_id,names,kind,pathway,mah_id\nA1,alphamab,drug,innovative,MAH-A\n")
    second.write_text("product_id,names,kind,pathway,mah_id\nB1,аlphamab,drug,innovative,MAH-B\n")
    assert main(["products", "load", str(first), "--store", url]) == 0
    assert main(["products", "load", str(second), "--store", url]) == 2
    assert "names: 'аlphamab' looks like 'alphamab'" in capsys.readouterr().err
    assert main(["products", "list", "--store", url]) == 0
    assert "B1" not in capsys.readouterr().out


def test_the_schema_pattern_refuses_exactly_what_the_validator_refuses():
    import re
    import unicodedata

    from pvsignal.products import HIDDEN_CLASS, NAME_PATTERN, visible_text

    hidden = re.compile(f"[{HIDDEN_CLASS}]")
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        character = chr(code)
        try:
            visible_text(character)
            shown = True
        except ValueError:
            shown = False
        assert shown == (hidden.match(character) is None), (
            hex(code),
            unicodedata.name(character, ""),
        )
    assert re.match(NAME_PATTERN, "阿尔法单抗 alpha") and not re.match(NAME_PATTERN, "  ")
