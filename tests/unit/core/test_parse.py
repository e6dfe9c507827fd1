"""The strict YAML loader: values, locations, and every row of the hostile-YAML catalogue
(reliability-notes §3) as a finding with file, line and column, never an exception."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configctl.core import parse as parse_mod
from configctl.core.model import Severity, SourceLocation
from configctl.core.parse import UNSET, Document, PlainScalar, parse

F = "apps/web/values.yaml"


def doc(text: str | bytes) -> Document:
    return parse(F, text.encode("utf-8") if isinstance(text, str) else text)


def found(d: Document) -> list[tuple[str, int, int]]:
    return [(f.rule, f.line, f.column) for f in d.findings]


# --- values and locations -------------------------------------------------------------


def test_mapping_with_locations() -> None:
    d = doc("replicas: 2\ndatabase:\n  host: db\n  port: 5432\nhosts:\n  - a\n  - b\n")
    assert d.ok
    assert d.findings == ()
    assert d.value == {"replicas": 2, "database": {"host": "db", "port": 5432}, "hosts": ["a", "b"]}
    assert d.locations[("replicas",)] == SourceLocation(file=F, line=1, column=1)
    assert d.locations[("database", "port")] == SourceLocation(file=F, line=4, column=3)
    assert d.locations[("hosts", 1)] == SourceLocation(file=F, line=7, column=5)
    assert d.location(("database", "port", "nope")) == d.locations[("database", "port")]
    assert d.location(()) == SourceLocation(file=F)


def test_locations_and_plain_scalars_read_as_mappings() -> None:
    """Kept packed and made on reading; as mappings they behave like the dicts they were."""
    d = doc("a: 1\nb:\n  - x\n  - 2\n")
    assert dict(d.locations) == {
        (): SourceLocation(file=F),
        ("a",): SourceLocation(file=F, line=1, column=1),
        ("b",): SourceLocation(file=F, line=2, column=1),
        ("b", 0): SourceLocation(file=F, line=3, column=5),
        ("b", 1): SourceLocation(file=F, line=4, column=5),
    }
    assert len(d.locations) == 5
    assert ("b", 1) in d.locations
    assert ("c",) not in d.locations
    assert d.locations.get(("c",)) is None
    assert d.locations == dict(d.locations)
    assert sorted(d.plain) == [("a",), ("b", 1)]
    assert d.plain[("b", 1)] == PlainScalar(text="2", tag="tag:yaml.org,2002:int", value=2)
    assert d.plain.get(("b", 0)) is None
    assert len(d.plain) == 2


def test_scalar_types_follow_yaml_1_1_but_are_remembered() -> None:
    d = doc("a: no\nb: 010\nc: 1:30\nd: 3.10\ne: ~\nf: yes\ng: 0x1F\nh: plain text\n")
    assert d.value == {
        "a": False,
        "b": 8,
        "c": 90,
        "d": 3.1,
        "e": None,
        "f": True,
        "g": 31,
        "h": "plain text",
    }
    assert d.plain[("a",)].text == "no"
    assert d.plain[("a",)].read_as == "the boolean false"
    assert d.plain[("b",)].read_as == "the integer 8 (YAML 1.1 octal)"
    assert d.plain[("c",)].read_as == "the number 90 (YAML 1.1 base-60)"
    assert d.plain[("d",)].read_as == "the number 3.1"
    assert d.plain[("e",)].read_as == "null (no value)"
    assert ("h",) not in d.plain


def test_quoted_scalars_stay_strings() -> None:
    d = doc("a: \"no\"\nb: '010'\nc: \"1:30\"\nd: '3.10'\ne: !!str 42\n")
    assert d.value == {"a": "no", "b": "010", "c": "1:30", "d": "3.10", "e": "42"}
    assert d.plain == {}


def test_explicit_core_tags_are_allowed() -> None:
    d = doc("a: !!int '7'\nb: !!bool 'true'\nc: !!float '1.5'\nd: !!null ''\n")
    assert d.ok
    assert d.value == {"a": 7, "b": True, "c": 1.5, "d": None}


@pytest.mark.parametrize(
    "text", ["2024-01-01", "2024-01-01T10:00:00Z", "2001-12-14 21:59:43.10 -5"]
)
def test_dates_stay_strings(text: str) -> None:
    d = doc(f"release: {text}\n")
    assert d.ok
    assert d.value == {"release": text}
    assert isinstance(d.value["release"], str)


def test_unset_marker() -> None:
    d = doc("a: !unset\nb:\n  c: !unset\n")
    assert d.ok
    assert d.value == {"a": UNSET, "b": {"c": UNSET}}
    assert repr(UNSET) == "!unset"
    assert parse_mod.Unset() is UNSET


def test_aliases_within_the_bound_are_shared_values() -> None:
    d = doc("base: &b {host: db, port: 1}\ncopy: *b\nlist: &l [1, 2]\nagain: *l\n")
    assert d.ok
    assert d.value["copy"] == {"host": "db", "port": 1}
    assert d.value["again"] == [1, 2]
    # a path inside an alias falls back to the alias itself
    assert d.location(("copy", "host")) == SourceLocation(file=F, line=2, column=1)


def test_utf8_bom_and_crlf_are_accepted() -> None:
    d = doc(codecs.BOM_UTF8 + b"a: 1\r\nb:\r\n  c: 2\r\n")
    assert d.ok
    assert d.value == {"a": 1, "b": {"c": 2}}
    assert d.locations[("b", "c")].line == 3


def test_unicode_keys_and_values_are_fine() -> None:
    d = doc("café: crème\n日本: 東京\n")
    assert d.ok
    assert d.value == {"café": "crème", "日本": "東京"}


def test_same_key_in_different_mappings_is_not_a_duplicate() -> None:
    d = doc("a:\n  host: x\nb:\n  host: y\n")
    assert d.ok


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n", "---\n", "~\n", "null\n"])
def test_empty_or_comment_only_is_a_warning(text: str) -> None:
    d = doc(text)
    assert d.value is None
    assert d.empty
    assert d.ok  # a warning, not an error
    assert [(f.rule, f.severity) for f in d.findings] == [("empty-file", Severity.WARNING)]


# --- the catalogue: rule, line, column -----------------------------------------------

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]\n"
    for p, n in zip("abcdefg", "bcdefgh", strict=True)
)

CATALOGUE = [
    pytest.param("a: 1\nb: 2\na: 3\n", [("duplicate-key", 3, 1)], id="duplicate-key"),
    pytest.param("x:\n  a: 1\n  a: 2\n", [("duplicate-key", 3, 3)], id="duplicate-key-nested"),
    pytest.param("1: one\n", [("key-not-string", 1, 1)], id="int-key"),
    pytest.param("yes: 1\n", [("key-not-string", 1, 1)], id="bool-key"),
    pytest.param("ON: 1\n", [("key-not-string", 1, 1)], id="bool-key-upper"),
    pytest.param("~: 1\n", [("key-not-string", 1, 1)], id="null-key"),
    pytest.param("1.5: x\n", [("key-not-string", 1, 1)], id="float-key"),
    pytest.param("!!int 3: x\n", [("key-not-string", 1, 1)], id="tagged-key"),
    pytest.param("? [a, b]\n: x\nok: 1\n", [("key-not-string", 1, 3)], id="complex-key"),
    pytest.param("? {a: 1}\n: x\n", [("key-not-string", 1, 3)], id="mapping-key"),
    pytest.param("base: &k a\n*k : 1\n", [("key-not-string", 2, 1)], id="alias-key"),
    pytest.param('"": 1\n', [("key-empty", 1, 1)], id="empty-key"),
    pytest.param('"a\\u200bb": 1\n', [("key-invisible-character", 1, 1)], id="zero-width-key"),
    pytest.param('"a\\u0007": 1\n', [("key-invisible-character", 1, 1)], id="control-char-key"),
    pytest.param("a: !Ref b\n", [("unknown-tag", 1, 4)], id="custom-tag"),
    pytest.param(
        "a: !!python/object/apply:os.system [id]\n", [("unknown-tag", 1, 4)], id="python-tag"
    ),
    pytest.param("a: !!python/name:os.system ''\n", [("unknown-tag", 1, 4)], id="python-name"),
    pytest.param("a: !!binary aGk=\n", [("unknown-tag", 1, 4)], id="binary"),
    pytest.param("a: !!set {x, y}\n", [("unknown-tag", 1, 4)], id="set"),
    pytest.param("a: !!omap [b: 1]\n", [("unknown-tag", 1, 4)], id="omap"),
    pytest.param("!!seq {a: 1}\n", [("unknown-tag", 1, 1)], id="seq-tag-on-map"),
    pytest.param("a: 1\n---\na: 2\n", [("multiple-documents", 2, 1)], id="two-documents"),
    pytest.param(
        "--- {a: 1}\n--- {a: 2}\n", [("multiple-documents", 2, 1)], id="two-explicit-documents"
    ),
    pytest.param(LAUGHS, [("alias-bomb", 4, 36)], id="billion-laughs"),
    pytest.param("a: *nowhere\n", [("unknown-alias", 1, 4)], id="unknown-alias"),
    pytest.param("a: .nan\n", [("non-finite-number", 1, 4)], id="nan"),
    pytest.param(
        "a: .NaN\nb: .inf\nc: -.Inf\nd: +.INF\n",
        [
            ("non-finite-number", 1, 4),
            ("non-finite-number", 2, 4),
            ("non-finite-number", 3, 4),
            ("non-finite-number", 4, 4),
        ],
        id="infinities",
    ),
    pytest.param("b: &b {x: 1}\nc:\n  <<: *b\n", [("merge-key", 3, 3)], id="merge-key"),
    pytest.param("c:\n  <<: [{x: 1}]\n", [("merge-key", 2, 3)], id="merge-key-list"),
    pytest.param("a: " + "[" * 70 + "]" * 70 + "\n", [("too-deep", 1, 67)], id="too-deep-flow"),
    pytest.param(
        "".join("  " * i + f"k{i}:\n" for i in range(70)) + "  " * 70 + "x: 1\n",
        [("too-deep", 65, 129)],
        id="too-deep-block",
    ),
    pytest.param(
        "a: " + "[" * 3000 + "]" * 3000, [("yaml-syntax", 1, 1003)], id="libyaml-flow-limit"
    ),
    pytest.param("a: " + "1" * 101 + "\n", [("number-out-of-range", 1, 4)], id="huge-integer"),
    pytest.param("a: !unset 3\n", [("unset-with-value", 1, 4)], id="unset-with-value"),
    pytest.param("a:\n\tb: 1\n", [("yaml-syntax", 2, 1)], id="tab"),
    pytest.param("a: [1, 2\n", [("yaml-syntax", 2, 1)], id="unclosed-flow"),
    pytest.param("a: 'open\n", [("yaml-syntax", 2, 1)], id="unclosed-quote"),
    pytest.param("a: 1\n b: 2\n", [("yaml-syntax", 2, 3)], id="bad-indent"),
    pytest.param(b"a: 1\nb: x\x00y\n", [("encoding", 2, 5)], id="nul-byte"),
    pytest.param("a: 1\n".encode("utf-16-le"), [("encoding", 1, 2)], id="utf-16-le-no-bom"),
    pytest.param(b"a: 1\nb: x\x07y\n", [("yaml-syntax", 2, 5)], id="bell"),
    pytest.param("a: 1\nb: caf\xe9\n".encode("latin-1"), [("encoding", 2, 7)], id="latin-1"),
    pytest.param(
        b"\xff\xfe\x00\x00" + "a: 1\n".encode("utf-32-le"), [("encoding", 1, 1)], id="utf-32-le-bom"
    ),
    pytest.param(
        codecs.BOM_UTF16_BE + "a: 1\n".encode("utf-16-be"), [("encoding", 1, 1)], id="utf-16-be-bom"
    ),
    pytest.param("a: 1\n".encode("utf-16"), [("encoding", 1, 1)], id="utf-16-bom"),
]


def test_explicit_timestamp_is_a_string_like_an_implicit_date() -> None:
    d = doc("a: !!timestamp 2024-01-01\nb: 2024-01-01\n")
    assert d.ok
    assert d.value == {"a": "2024-01-01", "b": "2024-01-01"}


@pytest.mark.parametrize(("text", "expected"), CATALOGUE)
def test_catalogue(text: str | bytes, expected: list[tuple[str, int, int]]) -> None:
    d = doc(text)
    assert found(d) == expected
    assert not d.ok
    for f in d.findings:
        assert f.file == F
        assert f.severity is Severity.ERROR
        assert f.message


def test_duplicate_key_names_the_first_line() -> None:
    (finding,) = doc("a: 1\nb: 2\na: 3\n").findings
    assert "`a`" in finding.message
    assert "first defined at line 1" in finding.message


def test_key_not_string_says_what_it_was_read_as_and_how_to_quote() -> None:
    (finding,) = doc("no: 1\n").findings
    assert "read as the boolean false" in finding.message
    assert finding.hint == "quote it: 'no':"


def test_python_tag_message_says_why() -> None:
    (finding,) = doc("a: !!python/object/apply:os.system [id]\n").findings
    assert "could run code" in finding.message


def test_encoding_message_names_the_byte_and_offset() -> None:
    (finding,) = doc("a: 1\nb: caf\xe9\n".encode("latin-1")).findings
    assert finding.message == "byte 0xE9 at offset 11 is not UTF-8"
    assert finding.hint == "re-save the file as UTF-8"


def test_utf16_message_names_the_encoding() -> None:
    (finding,) = doc("a: 1\n".encode("utf-16")).findings
    assert "UTF-16" in finding.message


def test_all_problems_of_a_file_are_reported() -> None:
    d = doc("a: 1\na: 2\nb: !Ref x\nc: .nan\n1: x\n")
    assert found(d) == [
        ("duplicate-key", 2, 1),
        ("unknown-tag", 3, 4),
        ("non-finite-number", 4, 4),
        ("key-not-string", 5, 1),
    ]
    assert d.value is not None  # the rest of the file is still read


def test_fatal_problems_drop_the_value() -> None:
    for text in ("a: 1\n---\nb: 2\n", LAUGHS, "a: *x\n", "a: [1\n"):
        assert doc(text).value is None


# --- bounds ---------------------------------------------------------------------------


def test_depth_bound_is_exact() -> None:
    ok = "a: " + "[" * (parse_mod.MAX_DEPTH - 1) + "]" * (parse_mod.MAX_DEPTH - 1) + "\n"
    too_deep = "a: " + "[" * parse_mod.MAX_DEPTH + "]" * parse_mod.MAX_DEPTH + "\n"
    assert doc(ok).ok
    assert [f.rule for f in doc(too_deep).findings] == ["too-deep"]


def test_integer_digit_bound() -> None:
    assert doc("a: " + "9" * 100 + "\n").value == {"a": int("9" * 100)}
    assert [f.rule for f in doc("a: " + "9" * 101 + "\n").findings] == ["number-out-of-range"]


def test_node_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_mod.MAX_NODES == 200_000
    # the same check, without building 200k nodes
    monkeypatch.setattr(parse_mod, "MAX_NODES", 1_000)
    items = ",".join(["0"] * 1_000)
    d = doc(f"a: [{items}]\n")
    assert [f.rule for f in d.findings] == ["too-many-nodes"]
    assert d.value is None
    at_bound = ",".join(["0"] * 999)
    assert doc(f"[{at_bound}]\n").ok  # the root list and its 999 items: exactly at the bound


def test_alias_bound_counts_expanded_nodes() -> None:
    # 1,000 items shared 9 times: 9,009 expanded nodes, under the bound of 10,000
    items = ", ".join(["1"] * 1000)
    under = f"a: &a [{items}]\n" + "".join(f"b{i}: *a\n" for i in range(9))
    assert doc(under).ok
    over = under + "b9: *a\n"
    assert [(f.rule, f.line) for f in doc(over).findings] == [("alias-bomb", 11)]


def test_file_size_bound() -> None:
    big = b"a: 1\n#" + b"x" * parse_mod.MAX_FILE_BYTES
    d = doc(big)
    assert found(d) == [("file-too-large", 1, 1)]
    assert str(parse_mod.MAX_FILE_BYTES) in d.findings[0].message


# --- never a traceback ----------------------------------------------------------------

YAMLISH = st.text(
    alphabet=st.sampled_from(list("ab:-[]{},&*!<>?|'\"#~ \n\t.0123456789noyes%@`\\")), max_size=80
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(YAMLISH.map(lambda s: s.encode("utf-8")), st.binary(max_size=80)))
def test_parse_never_raises(data: bytes) -> None:
    d = parse(F, data)
    for f in d.findings:
        assert f.file == F
        assert f.line >= 1
        assert f.column >= 1
        assert f.rule
        assert f.message
    if d.ok and not d.empty:
        assert d.value is not None
