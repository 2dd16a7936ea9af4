"""The vocabulary on realistic raw names (offline WordNet from Debian's packages)."""

from __future__ import annotations

import pytest

from entityseg_data.vocab import vocabulary as vocab
from entityseg_data.vocab.wordnet import lexnames_text, load_wordnet

# loading the offline WordNet costs ~4 CPU s: the tests that need it (fixture `wn`) are in the
# slow tier; the rules-only normalisation and the lexicographer names stay in the unit tier

RAW = [
    "Dogs", "dog", "dog ", "puppy", "Couch", "sofas", "TV", "television", "Bicyle", "bikes",
    "Cars", "automobile", "people", "Person", "kids", "Traffic Lights", "traffic_light",
    "grass", "Sky", "grey wall", "Walls", "T-Shirts", "tshirt", "leaves", "mice", "curtains",
    "drapes", "chiar", "chairs", "Mountains", "sea", "road", "unknown", "Unknown", "blurred",
    "animal_other", "Person other", "furniture_other", "", None, "colour", "zzzqqq",
]  # fmt: skip


@pytest.fixture(scope="module")
def wn():
    w = load_wordnet()
    if w is None:
        pytest.skip("no offline WordNet (run `make setup-system`)")
    return w


def test_lexnames_has_45_categories():
    lines = lexnames_text().splitlines()
    assert (
        len(lines) == 45
        and lines[5] == "05\tnoun.animal\t1"
        and lines[44].startswith("44\tadj.ppl")
    )


@pytest.mark.slow
def test_wordnet_hypernyms(wn):
    path = [s.name() for s in wn.synset("dog.n.01").hypernym_paths()[0]]
    assert path[0] == "entity.n.01" and "canine.n.02" in [
        s.name() for p in wn.synset("dog.n.01").hypernym_paths() for s in p
    ]
    assert "animal.n.01" in path


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Dogs", "dog"), ("  DOG ", "dog"), ("Couch", "sofa"), ("sofas", "sofa"),
        ("TV", "television"), ("Bicyle", "bicycle"), ("bikes", "bicycle"), ("Cars", "car"),
        ("automobile", "car"), ("people", "person"), ("kids", "child"),
        ("Traffic Lights", "traffic light"), ("traffic_light", "traffic light"),
        ("T-Shirts", "t-shirt"), ("tshirt", "t-shirt"), ("mice", "mouse"), ("leaves", "leaf"),
        ("drapes", "curtain"), ("chiar", "chair"), ("unknown", "unknown"),
        ("BLURRED", "blurred"), ("animal_other", "animal_other"), ("Person other", "person_other"),
        ("Furniture_Others", "furniture_other"), ("", ""), ("zzzqqq", "zzzqqq"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_canonical_name(wn, raw, canonical):
    assert vocab.canonical_name(raw) == canonical


@pytest.mark.parametrize(
    ("a", "b"),
    [("grey", "gray"), ("colour", "color"), ("Tyres", "tire"), ("aeroplane", "airplane")],
)
@pytest.mark.slow
def test_spelling_variants_agree(wn, a, b):
    assert vocab.canonical_name(a) == vocab.canonical_name(b)


def test_rules_only_without_wordnet():
    assert vocab._canonical("Buses", None) == "bus"
    assert vocab._canonical("Puppies", None) == "puppy"
    assert vocab._canonical("Couches", None) == "sofa"
    assert vocab._canonical("glasses", None) == "glasses"


@pytest.mark.slow
def test_vocabulary_classes_flags_counts_and_merge_table(wn, tmp_path):
    v = vocab.Vocabulary().build(RAW)
    classes = {c["name"]: c for c in v.class_list()}
    assert classes["dog"]["count"] == 3 and classes["dog"]["synset"] == "dog.n.01"
    assert classes["sofa"]["count"] == 2 and classes["car"]["count"] == 2
    assert classes["sky"]["kind"] == "stuff" and classes["road"]["kind"] == "stuff"
    assert classes["dog"]["kind"] == "thing" and classes["chair"]["count"] == 2
    assert classes["unknown"]["kind"] == "special" and classes["unknown"]["count"] == 4
    assert classes["person_other"]["kind"] == "thing"
    # ids: things first, then stuff, then special
    kinds = [c["kind"] for c in v.class_list()]
    assert kinds == sorted(kinds, key=["thing", "stuff", "special"].index)
    table = {r["raw"]: r for r in v.merge_table()}
    assert table["Couch"]["class"] == "sofa" and table["Couch"]["synset"] == "sofa.n.01"
    assert table["zzzqqq"]["source"] == "unmapped"
    assert v.category_of("Dogs") == (classes["dog"]["id"], "dog")
    assert v.category_of(None)[1] == "unknown"
    assert v.category_of("hound")[1] == "dog"  # outside the build: nearest class above it
    tree = v.tree()
    assert tree["parent"]["dog.n.01"] is not None and tree["parent"]["entity.n.01"] is None
    paths = v.save(tmp_path)
    assert paths["classes"].read_text().startswith("id,name,synset,kind,isthing,count")


@pytest.mark.slow
def test_rare_names_merge_up_the_tree(wn):
    names = ["dog"] * 5 + ["puppy", "poodle", "car", "jeep", "minivan", "sky", "truck"]
    v = vocab.Vocabulary(min_count=3).build(names)
    table = {r["raw"]: r for r in v.merge_table()}
    assert table["puppy"]["class"] == "dog" and table["poodle"]["class"] == "dog"
    assert table["jeep"]["class"] == "car" and table["jeep"]["source"] == "merged"
    assert table["car"]["class"] == "car"  # kept: its hyponyms make it frequent enough
    assert table["truck"]["source"] == "merged"  # joins car under 'motor vehicle'
    assert table["sky"]["class"] == "sky"  # nothing frequent enough below the depth limit


@pytest.mark.slow
def test_user_mapping_overrides(wn, tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("raw,class,kind\ncouch,settee,thing\nTrees,tree,stuff\n")
    v = vocab.Vocabulary(mapping=vocab.load_mapping(path)).build(["Couch", "sofa", "Trees"])
    table = {r["raw"]: r for r in v.merge_table()}
    assert table["Couch"]["class"] == "settee" and table["Couch"]["source"] == "override"
    assert table["sofa"]["class"] == "sofa"
    kinds = {c["name"]: c["kind"] for c in v.class_list()}
    assert kinds["tree"] == "stuff"
    bad = tmp_path / "bad.csv"
    bad.write_text("dog,canine,animalish\n")
    with pytest.raises(vocab.DataError, match="kind must be"):
        vocab.load_mapping(bad)


@pytest.mark.slow
def test_every_name_has_a_category(wn):
    v = vocab.Vocabulary().build(["dog", "dog", "sky"])
    names = {c["name"]: c for c in v.class_list()}
    assert names["unknown"]["count"] == 0 and names["unknown"]["kind"] == "special"
    assert v.category_of(None)[1] == "unknown" and v.category_of("zzzqqq")[1] == "unknown"


@pytest.mark.slow  # loads WordNet
def test_object_names_are_not_read_as_slang_for_people():
    """'mug' is the drinking vessel, not chump.n.01 (its first physical sense in WordNet 3.0)."""
    pytest.importorskip("nltk")
    from entityseg_data.vocab.vocabulary import _wordnet, canonical_name

    if _wordnet() is None:
        pytest.skip("offline WordNet not installed")
    assert canonical_name("mug") == "mug"
    assert canonical_name("Mugs") == "mug"
    assert canonical_name("man") == "person"
