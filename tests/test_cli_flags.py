"""The flags of `clusters` and `compare` are the fields of ClusterSpec and CompareSpec (generated from the
fields' own help, parsed by the fields' types), and every list flag takes one comma-separated value."""

from __future__ import annotations

import dataclasses

import pytest

from clinfonce.cli import build_parser, main
from clinfonce.clusters.spec import ClusterSpec
from clinfonce.compare.settings import CompareSpec
from clinfonce.flags import given_fields


def _subparser(name: str):
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return commands.choices[name]


@pytest.mark.parametrize(("command", "cls"), [("clusters", ClusterSpec), ("compare", CompareSpec)])
def test_every_field_with_help_is_a_flag_that_says_the_fields_help(command, cls) -> None:
    actions = {action.dest: action for action in _subparser(command)._actions}
    skipped = {"overrides", "settings"} if cls is CompareSpec else set()
    for field in dataclasses.fields(cls):
        if "help" not in field.metadata or field.metadata.get("training_only") or field.name in skipped:
            assert field.name not in actions or cls is CompareSpec, field.name
            continue
        action = actions[field.name]
        assert action.help.startswith(field.metadata["help"]), field.name
        assert list(action.choices or []) == list(field.metadata.get("choices") or []), field.name


def test_flags_parse_into_the_fields_types() -> None:
    args = build_parser().parse_args(
        ["clusters", "--table", "t.csv", "--out", "c.csv", "--attributes", "a, b", "--top-k", "4",
         "--no-spherical", "--bins", "size=4;weight=0:10:20", "--path-rule", "shortest"]
    )  # fmt: skip
    spec = ClusterSpec.from_fields(given_fields(args, args.spec_fields))
    assert spec == ClusterSpec(
        source="attributes",
        attributes=["a", "b"],
        top_k=4,
        spherical=False,
        bins={"size": 4, "weight": [0, 10, 20]},
        path_rule="shortest",
    )
    args = build_parser().parse_args(
        [
            "compare",
            "--base",
            "shapes",
            "--methods",
            "simclr,supcon",
            "--seeds",
            "0,1,2",
            "--sweep",
            "top_k=1,3",
        ]
    )
    assert given_fields(args, args.spec_fields) == {
        "config": "shapes",
        "methods": ["simclr", "supcon"],
        "seeds": [0, 1, 2],
        "sweep": {"top_k": [1, 3]},
    }


def test_one_list_syntax_and_the_old_form() -> None:
    parser = build_parser()
    # the demo took `--seeds 0 1 2`; both forms give the same seeds
    assert parser.parse_args(["demo", "--seeds", "0", "1", "2"]).seeds == [[0], [1], [2]]
    assert parser.parse_args(["demo", "--seeds", "0,1,2"]).seeds == [[0, 1, 2]]


def test_a_space_separated_list_elsewhere_is_one_line_with_the_hint(tmp_path, capsys) -> None:
    args = ["compare", "--base", "shapes", "--methods", "simclr", "--seeds", "0", "1", "--out", str(tmp_path)]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "comma-separated value, e.g. --seeds 0,1,2" in error
    assert not any(tmp_path.iterdir())  # refused before anything was written
