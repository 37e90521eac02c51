"""Reading a MedDRA ASCII release (a synthetic one in the real format) and resolving terms."""

from __future__ import annotations

import pytest

from pvsignal.errors import InputError
from pvsignal.terminology.dictionary import Dictionary
from pvsignal.terminology.meddra import read_release
from pvsignal.terminology.normalise import normalise_term
from tests.support.meddra import (
    DRESS,
    HEPATIC_FAILURE,
    NAUSEA,
    RASH,
    SJS,
    write_release,
)


@pytest.fixture(scope="module")
def dictionary(tmp_path_factory):
    root = tmp_path_factory.mktemp("meddra")
    english = read_release(write_release(root / "en"))
    chinese = read_release(write_release(root / "zh", chinese=True))
    return Dictionary.of([chinese, english])


def test_the_three_spellings_and_faers_upper_case_share_one_normal_form():
    spellings = [
        "Stevens-Johnson syndrome",
        "Stevens-Johnson Syndrome",
        "stevens johnson syndrome",
        "STEVENS-JOHNSON SYNDROME",
        "Stevens\u2013Johnson\u00a0 syndrome ",  # en dash, no-break space, trailing space
        "ＳＴＥＶＥＮＳ－ＪＯＨＮＳＯＮ ＳＹＮＤＲＯＭＥ",  # full width
    ]
    assert {normalise_term(s) for s in spellings} == {"stevens johnson syndrome"}
    assert normalise_term("Rash") != normalise_term("Rash erythematous")


def test_a_release_reads_its_version_language_and_terms(tmp_path):
    release = read_release(write_release(tmp_path, version="26.1"))
    assert (release.version, release.language) == ("26.1", "en")
    assert release.summary() == {"llt": 10, "pt": 5, "hlt": 5, "hlgt": 4, "soc": 4, "smq": 3}
    assert release.llts["90002002"] == ("Stevens Johnson syndrome", SJS, False)  # non-current
    assert sorted(p for p in release.paths if p[0] == SJS) == [
        (SJS, "90000201", "90000101", "90000001", True),
        (SJS, "90000202", "90000102", "90000002", False),
    ]


def test_the_version_and_language_come_from_options_without_a_release_file(tmp_path):
    folder = write_release(tmp_path / "zh", chinese=True, release_file=False)
    with pytest.raises(InputError, match="give the version"):
        read_release(folder)
    release = read_release(folder, version="26.0")
    assert (release.version, release.language) == ("26.0", "zh")  # told from its names
    assert read_release(folder, version="26.0", language="en").language == "en"


def test_an_option_contradicting_the_release_file_is_refused(tmp_path):
    folder = write_release(tmp_path)
    with pytest.raises(InputError, match=r"version '26.0', but --version '27.0'"):
        read_release(folder, version="27.0")


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        ("pt.asc", "90001009$Orphan$$90000099$$$$$$$$", r"pt.asc:6: pt_soc_code '90000099'"),
        ("llt.asc", "90002099$Short$90001001$", r"llt.asc:11: 4 fields, expected at least 10"),
        ("hlt_pt.asc", "x$90001001$", r"hlt_pt.asc:8: code 'x' is not a number"),
        (
            "smq_content.asc",
            "90003001$90001001$3$2$A$1$A$26.0$26.0$",
            r"smq_content.asc:8: term_level '3'",
        ),
    ],
)
def test_a_bad_line_is_refused_naming_file_line_and_value(tmp_path, file, line, expected):
    folder = write_release(tmp_path)
    with (folder / file).open("a", encoding="utf-8") as handle:
        handle.write(line + "\r\n")
    with pytest.raises(InputError, match=expected):
        read_release(folder)


def test_a_path_outside_the_link_files_or_a_wrong_primary_soc_is_refused(tmp_path):
    folder = write_release(tmp_path)
    links = (folder / "hlt_pt.asc").read_bytes().replace(b"90000202$90001001$\r\n", b"")
    (folder / "hlt_pt.asc").write_bytes(links)
    with pytest.raises(InputError, match=r"mdhier.asc:2: path \('90000202', '90001001'\)"):
        read_release(folder)
    folder = write_release(tmp_path / "primary")
    hierarchy = (folder / "mdhier.asc").read_text().replace("$90000001$N$", "$90000001$Y$", 1)
    (folder / "mdhier.asc").write_text(hierarchy)
    with pytest.raises(InputError, match="second primary path|primary SOC"):
        read_release(folder)


def test_missing_files_and_folders_are_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_release(tmp_path / "nowhere")
    folder = write_release(tmp_path)
    (folder / "smq_content.asc").unlink()
    with pytest.raises(InputError, match="has no smq_content.asc"):
        read_release(folder)


@pytest.mark.parametrize(
    ("reaction", "pt"),
    [
        ({"pt_code": SJS}, SJS),
        ({"pt_code": "90002003"}, RASH),  # an LLT code sent as a PT code (a demoted PT)
        ({"llt_code": "90002001"}, SJS),
        ({"llt_code": "90002002"}, SJS),  # non-current LLTs still resolve
        ({"llt_code": DRESS}, DRESS),  # every PT is its own LLT
        ({"pt": "stevens-johnson SYNDROME"}, SJS),
        ({"pt": "ＲＡＳＨ"}, RASH),
        ({"pt": "liver  failure"}, HEPATIC_FAILURE),  # an LLT name
        ({"llt": "Feeling-Sick"}, NAUSEA),
        ({"pt": "史蒂文斯-约翰逊综合征"}, SJS),  # Chinese names are aliases
        ({"pt": "感觉恶心"}, NAUSEA),
        ({"pt_code": "99999999", "pt": "Rash"}, RASH),  # an unknown code, a known name
        ({"pt": "Made-up reaction"}, None),
        ({"llt_code": "99999999"}, None),
    ],
)
def test_reactions_resolve_by_code_then_name_in_any_case_and_language(dictionary, reaction, pt):
    fields = {"pt": None, "pt_code": None, "llt_code": None, "llt": None, **reaction}
    assert dictionary.resolve(**fields) == pt


def test_terms_are_named_in_english_when_the_english_release_is_loaded(dictionary):
    assert dictionary.languages == ("en", "zh")
    assert dictionary.pt_names[SJS] == "Stevens-Johnson syndrome"


def test_a_chinese_release_alone_names_the_terms_in_chinese(tmp_path):
    alone = Dictionary.of([read_release(write_release(tmp_path, chinese=True))])
    assert alone.languages == ("zh",)
    assert alone.pt_names[SJS] == "史蒂文斯-约翰逊综合征"
    assert alone.resolve(pt="Rash", pt_code=None, llt_code=None, llt=None) is None
    assert alone.resolve(pt=None, pt_code=None, llt_code="90002003", llt=None) == RASH
