"""Tests of the WordNet reader: a hand-written data.noun in the real format, then the installed database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinfonce.clusters.hierarchy import hierarchy_clusters
from clinfonce.clusters.wordnet import WORDNET_DIR_ENV, WordNet

HEADER = [
    "  1 A tiny hand-written fixture in the format of WordNet 3.0's data.noun.  ",
    "  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.  ",
]
# Synset lines with {name} standing for the 8-digit offset of the synset called name. "domestic" comes
# before "canine", so its offset (hence its wnid) is the smaller one.
SYNSETS = {
    "entity": "{entity} 03 n 01 entity 0 001 ~ {object} n 0000 | that which is perceived or known  ",
    "object": "{object} 03 n 02 object 0 physical_object 0 002 @ {entity} n 0000 ~ {animal} n 0000 | a tangible "
    "and visible entity  ",
    "animal": "{animal} 03 n 02 animal 0 beast 0 004 @ {object} n 0000 + 01617210 v 0502 ~ {canine} n 0000 "
    "~ {domestic} n 0000 | a living organism  ",
    "domestic": "{domestic} 05 n 02 domestic_animal 0 domesticated_animal 0 002 @ {animal} n 0000 "
    "~ {dog} n 0000 | any of various animals domesticated to live with people  ",
    "canine": "{canine} 05 n 02 canine 0 canid 0 003 @ {animal} n 0000 + 02677704 a 0101 ~ {dog} n 0000 | a "
    "flesh-eating mammal  ",
    "dog": "{dog} 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 005 @ {canine} n 0000 @ {domestic} n 0000 "
    "#m {pack} n 0000 ~ {puppy} n 0000 ~i {lassie} n 0000 | a member of the genus Canis; a pet  ",
    "pack": "{pack} 14 n 01 pack 0 001 %m {dog} n 0000 | a group of hunting animals  ",
    "puppy": "{puppy} 05 n 0a puppy 0 pup 0 whelp 0 young_dog 0 doglet 0 pupling 0 puplet 0 whelpling 0 cub 1 "
    "dogling 0 001 @ {dog} n 0000 | a young dog  ",
    "lassie": "{lassie} 18 n 01 Lassie 0 001 @i {dog} n 0000 | a collie of films; not @ 00000001 n 0000  ",
}
WORDNET_DATA = Path("/usr/share/wordnet/data.noun")
real_wordnet = pytest.mark.skipif(
    not WORDNET_DATA.is_file(), reason="WordNet 3.0 not installed (wordnet-base)"
)


def write_data_noun(directory: Path, synsets: dict[str, str]) -> dict[str, str]:
    """Write ``data.noun`` with correct byte offsets; return name -> wnid."""
    dummy = dict.fromkeys(synsets, "00000000")  # every offset prints as 8 digits, so lengths are known
    offsets, at = {}, sum(len(line) + 1 for line in HEADER)
    for name, template in synsets.items():
        offsets[name] = f"{at:08d}"
        at += len(template.format(**dummy)) + 1
    lines = HEADER + [template.format(**offsets) for template in synsets.values()]
    (directory / "data.noun").write_text("".join(line + "\n" for line in lines), encoding="ascii")
    return {name: f"n{offset}" for name, offset in offsets.items()}


@pytest.fixture
def mini(tmp_path):
    ids = write_data_noun(tmp_path, SYNSETS)
    return WordNet(tmp_path), ids, tmp_path


def test_fixture_offsets_start_their_lines(mini):
    _, ids, directory = mini
    data = (directory / "data.noun").read_bytes()
    for wnid in ids.values():
        offset = int(wnid[1:])
        assert data[offset - 1 : offset] == b"\n"
        assert data[offset : offset + 9] == wnid[1:].encode() + b" "


def test_parents_in_file_order_including_instance_hypernyms(mini):
    wordnet, ids, _ = mini
    assert wordnet.parents(ids["dog"]) == [ids["canine"], ids["domestic"]]
    assert wordnet.parents(ids["lassie"]) == [ids["dog"]]  # @i
    assert wordnet.parents(ids["puppy"]) == [ids["dog"]]  # after ten words (w_cnt 0a)
    assert wordnet.parents(ids["animal"]) == [ids["object"]]  # the verb pointer is not a parent
    assert wordnet.parents(ids["entity"]) == []
    assert wordnet.parents(ids["pack"]) == []  # a member meronym is not a parent


def test_names_and_lemmas(mini):
    wordnet, ids, _ = mini
    assert wordnet.name(ids["dog"]) == "dog"
    assert wordnet.name(ids["domestic"]) == "domestic_animal"
    assert wordnet.name(ids["lassie"]) == "Lassie"
    assert wordnet.synset(ids["puppy"]).lemmas == (
        "puppy", "pup", "whelp", "young_dog", "doglet", "pupling", "puplet", "whelpling", "cub", "dogling",
    )  # fmt: skip
    assert wordnet.synset(ids["dog"]) is wordnet.synset(ids["dog"])  # cached


def test_parent_map_covers_all_ancestors(mini):
    wordnet, ids, _ = mini
    expected = {
        "puppy": ["dog"],
        "lassie": ["dog"],
        "dog": ["canine", "domestic"],
        "canine": ["animal"],
        "domestic": ["animal"],
        "animal": ["object"],
        "object": ["entity"],
        "entity": [],
    }
    got = wordnet.parent_map([ids["puppy"], ids["lassie"]])
    assert got == {ids[name]: [ids[parent] for parent in parents] for name, parents in expected.items()}


def test_parent_map_feeds_hierarchy_clusters(mini):
    wordnet, ids, _ = mini
    labels = [ids["puppy"], ids["lassie"], ids["dog"]]
    parents = wordnet.parent_map(labels)
    # dog: entity > object > animal > {canine | domestic_animal} > dog, equal lengths: the smaller wnid wins.
    assert ids["domestic"] < ids["canine"]
    result = hierarchy_clusters(labels, parents, 3, path_rule="shortest")
    assert result.keys == (ids["domestic"],)
    # the default rule follows the first-listed hypernym, canine
    assert hierarchy_clusters(labels, parents, 3).keys == (ids["canine"],)
    assert sorted(result.provenance["ambiguous_at_level"]) == sorted(labels)
    assert hierarchy_clusters(labels, parents, 5).keys == tuple(
        sorted([ids["lassie"], ids["puppy"], ids["dog"]])
    )
    # with the first lemma next to each wnid (same ids); the fixture's offsets give dog < puppy < lassie
    named = hierarchy_clusters(labels, parents, 3, names=wordnet.name)
    assert named.keys == (f"{ids['canine']} (canine)",)
    five = hierarchy_clusters(labels, parents, 5, names=wordnet.name)
    assert five.keys == (f"{ids['dog']} (dog)", f"{ids['puppy']} (puppy)", f"{ids['lassie']} (Lassie)")
    assert five.ids.tolist() == hierarchy_clusters(labels, parents, 5).ids.tolist() == [1, 2, 0]


def test_directory_from_environment(mini, monkeypatch, tmp_path_factory):
    _, ids, directory = mini
    monkeypatch.setenv(WORDNET_DIR_ENV, str(directory))
    assert WordNet().name(ids["canine"]) == "canine"
    monkeypatch.setenv(WORDNET_DIR_ENV, str(tmp_path_factory.mktemp("empty")))
    assert WordNet(directory).name(ids["canine"]) == "canine"  # the argument wins
    with pytest.raises(FileNotFoundError, match=WORDNET_DIR_ENV):
        WordNet()


def test_missing_directory_says_how_to_get_it(tmp_path):
    for directory in (tmp_path / "nope", tmp_path):
        with pytest.raises(FileNotFoundError) as error:
            WordNet(directory)
        assert "apt-get install wordnet-base" in str(error.value)
        assert WORDNET_DIR_ENV in str(error.value)


def test_bad_wnids(mini):
    wordnet, ids, _ = mini
    inside_a_line = f"n{int(ids['dog'][1:]) + 1:08d}"
    second_header_line = f"n{len(HEADER[0]) + 1:08d}"
    for wnid in ["n123", "02084071", "x00001740", "n0000174a", "n000017400", "N" + ids["dog"][1:], ""]:
        with pytest.raises(ValueError, match=re.escape(repr(wnid))):
            wordnet.parents(wnid)
    for wnid in [inside_a_line, second_header_line, "n00000000", "n99999999"]:
        with pytest.raises(ValueError, match=wnid):
            wordnet.name(wnid)
    with pytest.raises(ValueError, match="malformed wnid"):
        wordnet.parents(2084071)


def test_malformed_line(tmp_path):
    ids = write_data_noun(
        tmp_path, {"bad": "{bad} 03 n 01 entity 0 002 ~ 00001930 n 0000 | too few pointers  "}
    )
    with pytest.raises(ValueError, match="malformed line"):
        WordNet(tmp_path).parents(ids["bad"])


@real_wordnet
def test_real_dog_ancestors():
    wordnet = WordNet()
    dog = "n02084071"
    assert wordnet.name(dog) == "dog"
    assert wordnet.parents(dog) == ["n02083346", "n01317541"]  # canine, domestic_animal
    ancestors = wordnet.parent_map([dog])
    expected = {
        "n02083346": "canine",
        "n02075296": "carnivore",
        "n01861778": "mammal",
        "n00015388": "animal",
        "n00001740": "entity",
    }
    for wnid, name in expected.items():
        assert wnid in ancestors
        assert wordnet.name(wnid) == name
    assert ancestors["n00001740"] == []
    assert wordnet.parents("n00060548") == ["n00058743"]  # Hegira, an instance (@i)


@real_wordnet
def test_real_imagenet_classes_first_rule_is_the_taxonomic_path():
    """The default rule follows the first hypernym: Chihuahua and tabby meet at carnivore (depth 11), as
    in the familiar WordNet path entity > ... > animal > chordate > vertebrate > mammal > placental >
    carnivore > canine > dog; tench goes chordate > vertebrate > aquatic_vertebrate > fish > bony_fish."""
    chihuahua, tabby, tench = "n02085620", "n02123045", "n01440764"
    labels = [chihuahua, tabby, tench, chihuahua]
    parents = WordNet().parent_map(labels)
    seven = hierarchy_clusters(labels, parents, 7)
    assert seven.keys == ("n01466257",)  # chordate
    eleven = hierarchy_clusters(labels, parents, 11)
    assert eleven.keys == ("n02075296", "n02514825")  # carnivore, bony_fish
    assert eleven.ids.tolist() == [0, 0, 1, 0]
    named = hierarchy_clusters(labels, parents, 11, names=WordNet().name)
    assert named.keys == ("n02075296 (carnivore)", "n02514825 (bony_fish)")
    assert named.ids.tolist() == [0, 0, 1, 0]
    twelve = hierarchy_clusters(labels, parents, 12)
    assert twelve.keys == ("n02083346", "n02120997", "n02528163")  # canine, feline, teleost_fish
    assert twelve.ids.tolist() == [0, 1, 2, 0]
    assert twelve.provenance["ambiguous_at_level"] == [chihuahua, tabby]  # domestic_animal paths
    records = {record["class"]: record for record in twelve.provenance["multi_path_classes"]}
    assert records[chihuahua]["chosen_path"][9:14] == [
        "n01861778", "n01886756", "n02075296", "n02083346", "n02084071",  # mammal ... canine, dog
    ]  # fmt: skip


@real_wordnet
def test_real_imagenet_classes_shortest_rule():
    chihuahua, tabby, tench = "n02085620", "n02123045", "n01440764"
    labels = [chihuahua, tabby, tench, chihuahua]
    parents = WordNet().parent_map(labels)
    # Paths traced by hand in data.noun: Chihuahua and tabby reach animal (depth 6) through both
    # domestic_animal (shortest) and chordate > vertebrate > mammal > ...; tench only through chordate.
    six = hierarchy_clusters(labels, parents, 6, path_rule="shortest")
    assert six.keys == ("n00015388",)  # animal
    assert six.provenance["ambiguous_at_level"] == []
    seven = hierarchy_clusters(labels, parents, 7, path_rule="shortest")
    assert seven.keys == ("n01317541", "n01466257")  # domestic_animal, chordate
    assert seven.ids.tolist() == [0, 0, 1, 0]
    assert seven.provenance["ambiguous_at_level"] == [chihuahua, tabby]
    records = {record["class"]: record for record in seven.provenance["multi_path_classes"]}
    assert records[chihuahua]["n_paths"] == 2
    assert records[tabby]["n_paths"] == 2
    assert records[tabby]["chosen_path"] == [
        "n00001740", "n00001930", "n00002684", "n00003553", "n00004258",  # entity ... living_thing
        "n00004475", "n00015388", "n01317541", "n02121808", tabby,  # organism, animal, domestic_animal, cat
    ]  # fmt: skip
    eight = hierarchy_clusters(labels, parents, 8, path_rule="shortest")
    assert eight.keys == ("n01471682", "n02084071", "n02121808")  # vertebrate, dog, domestic_cat
    assert eight.ids.tolist() == [1, 2, 0, 1]
    twelve = hierarchy_clusters(labels, parents, 12, path_rule="shortest")
    assert twelve.keys == ("n02085620", "n02123045", "n02528163")  # Chihuahua, tabby, teleost_fish
    assert twelve.provenance["classes_shallower_than_level"] == [chihuahua, tabby]


@real_wordnet
def test_real_parents_match_a_regex_reading_of_the_file():
    pointer = re.compile(r" @i? (\d{8}) n ")
    lines = [line for line in WORDNET_DATA.read_text().splitlines() if not line.startswith("  ")]
    wordnet = WordNet()
    for line in lines[::50]:
        wnid = "n" + line[:8]
        head = line.split(" | ")[0] + " "
        assert wordnet.parents(wnid) == ["n" + offset for offset in pointer.findall(head)], wnid
        assert wordnet.name(wnid) == line.split()[4]
