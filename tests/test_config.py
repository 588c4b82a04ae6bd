"""Configuration: validation naming the option, every field on the command line with its real
default, precedence and round trips."""

from __future__ import annotations

import dataclasses
import re

import pytest
from typer.testing import CliRunner

from lba_cli.choices import RunKind
from lba_cli.cli import app
from lba_cli.config import (
    SECTIONS,
    TRAIN_DEFAULTS,
    FinetuneConfig,
    GridConfig,
    ModelConfig,
    NeighborConfig,
    RunConfig,
    TrainConfig,
    build_run_config,
    cli_option,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    read_exclude_ids,
)
from lba_cli.errors import ConfigError

runner = CliRunner()


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.output)


ERRORS = [
    ("pad", lambda: NeighborConfig(pad_min_A=3.0, pad_max_A=1.0), "invalid --pad MAX (pad_max_A): 1.0"),
    ("weight-decay", lambda: TrainConfig(weight_decay=-1.0), "invalid --weight-decay (weight_decay)"),
    ("min-density", lambda: NeighborConfig(min_density_per_nm3=-5.0), "invalid --min-density (min_density_per_nm3)"),
    ("device", lambda: TrainConfig(device="gpu"), "invalid --device (device): 'gpu'"),
    ("arch", lambda: ModelConfig(arch="vit"), "expected: one of cnn, resnet, resnet-bottleneck"),
    ("channels", lambda: GridConfig(channels="C;C"), "invalid --channels (channels)"),
    ("data", lambda: FinetuneConfig(data_path=""), "invalid DATA (data_path)"),
]


@pytest.mark.parametrize("name,build,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_name_the_option_and_what_was_expected(name, build, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build()


def test_every_field_can_be_set_from_the_command_line():
    helps = _help("pretrain") + _help("finetune") + _help("voxelize")
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            if f.name == "kind" or f.name in SECTIONS:
                continue  # the command is the kind; sections are their fields
            option = cli_option(cls, f.name)
            assert option is not None, f"{cls.__name__}.{f.name} has no command-line option"
            assert option.flag.split("/")[0] in helps, f"no command offers {option.flag}"


@pytest.mark.parametrize("kind", list(RunKind), ids=[k.value for k in RunKind])
def test_help_shows_each_commands_real_defaults(kind):
    text = _help(kind.value)
    defaults = TRAIN_DEFAULTS[kind]
    assert f"per optimizer step. (default: {defaults.batch_size})" in text
    assert f"Epochs to train. (default: {defaults.num_epochs})" in text
    assert "(default: auto)" in text and "(default: never stop early)" in text
    if kind is RunKind.pretrain:
        assert "views, Å. (default: 1 2)" in text and "(default: 2048)" in text and "(default: on)" in text


def test_new_options_reach_the_config(tmp_path, tiny_h5):
    import tomllib

    result = runner.invoke(app, ["finetune", str(tiny_h5), "--weight-decay", "0.01", "--deterministic", "--no-rotate",
                                 "--head-hidden", "64", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = tomllib.loads(result.stdout)
    assert printed["train"]["weight_decay"] == 0.01 and printed["train"]["deterministic"] is True
    assert printed["finetune"]["rotate"] is False and printed["model"]["head_hidden"] == 64
    assert printed["train"]["batch_size"] == 16  # finetune's default, not pretrain's
    ids = tmp_path / "ids.txt"
    ids.write_text("1ACB  # a comment\n1a2k 1AHW\n")
    result = runner.invoke(app, ["pretrain", "--structures", str(tmp_path), "--pad", "0", "4", "--val-fraction", "0.25",
                                 "--min-density", "30", "--exclude-ids", str(ids), "--radius", "0.4",
                                 "--no-protein-channel", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = tomllib.loads(result.stdout)
    assert printed["neighbor"]["pad_min_A"] == 0 and printed["neighbor"]["pad_max_A"] == 4
    assert printed["neighbor"]["val_fraction"] == 0.25 and printed["neighbor"]["min_density_per_nm3"] == 30
    assert printed["exclude_ids"] == ["1a2k", "1acb", "1ahw"] and printed["train"]["batch_size"] == 64
    assert printed["grid"]["radius_A"] == 0.4 and printed["grid"]["protein_channel"] is False


def test_precedence_defaults_file_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('kind = "pretrain"\n[train]\nlr = 0.01\nbatch_size = 8\n[neighbor]\nangle_deg = 10.0\n')
    config = build_run_config("pretrain", path, {"train": {"lr": 0.005, "seed": None}, "structures": ["s.pdb"]})
    assert config.train.lr == 0.005 and config.train.batch_size == 8 and config.train.num_epochs == 10
    assert config.neighbor.angle_deg == 10.0 and config.train.seed == 0
    with pytest.raises(ConfigError, match="is a pretrain config"):
        build_run_config("finetune", path, {})


def test_round_trips_through_json_and_toml(tmp_path):
    config = RunConfig(kind="finetune", finetune=FinetuneConfig(data_path="d.h5", init="random"),
                       model=ModelConfig(arch="cnn", widths=(8, 16)), grid=GridConfig(channels="C;N,O;*"), name="x")
    assert config_from_dict(config_to_dict(config)) == config
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(config))
    assert build_run_config("finetune", path, {}) == config


def test_runs_recorded_before_the_pair_head_option_keep_the_pooled_head():
    from lba_cli.config import run_config_from_json

    recorded = config_to_dict(RunConfig(kind="pretrain", structures=("s.h5",), neighbor=NeighborConfig(),
                                        model=ModelConfig(arch="cnn")))
    del recorded["model"]["pair_head"]
    assert run_config_from_json(recorded).model.pair_head == "pooled"
    recorded["model"]["pair_head"] = "faces"
    assert run_config_from_json(recorded).model.pair_head == "faces"


def test_difficulty_labels_and_id_files(tmp_path):
    task = NeighborConfig(pad_min_A=1.0, pad_max_A=6.0, angle_deg=20.0)
    assert task.label == "1-6-20" and NeighborConfig.parse_label(task.label) == (1.0, 6.0, 20.0)
    with pytest.raises(ConfigError, match="MIN-MAX-ANGLE"):
        NeighborConfig.parse_label("1-2")
    ids = tmp_path / "ids"
    ids.write_text("# held out\n3ZZZ 1abc\n1ABC\n")
    assert read_exclude_ids(ids) == ("1abc", "3zzz")


# Values of the wrong type, as hand-written TOML and JSON tools produce them: (id, section, TOML line,
# message fragment). Each is refused before anything runs, naming the field, the value and the type.
WRONG_TYPES = [
    ("quoted-integer", "train", 'num_epochs = "2"', "invalid --epochs (num_epochs): '2' (text) in {file} [train]\n"
                                                    "expected: an integer (write num_epochs = 2, without quotes)"),
    ("float-for-integer", "train", "batch_size = 4.0", "invalid --batch-size (batch_size): 4.0 (a number) in {file} "
                                                       "[train]\nexpected: an integer (write batch_size = 4, without"),
    ("fraction-for-integer", "train", "batch_size = 4.5", "expected: an integer\n"),
    ("bool-for-integer", "train", "patience = true", "invalid --patience (patience): True (true/false)"),
    ("text-for-number", "train", 'lr = "fast"',
     "invalid --lr (lr): 'fast' (text) in {file} [train]\nexpected: a number"),
    ("number-for-bool", "finetune", "freeze = 1", "invalid --freeze (freeze): 1 (an integer) in {file} [finetune]\n"
                                                  "expected: true or false"),
    ("number-for-text", "train", "device = 0", "invalid --device (device): 0 (an integer)"),
    ("text-in-list", "model", 'widths = [8, "16"]', "invalid --width (widths): [8, '16'] (a list) in {file} [model]\n"
                                                    "expected: a list of integers"),
    ("text-for-list", "model", "widths = 8", "expected: a list of integers"),
    ("grid-text-for-integer", "grid", 'box_size_voxels = "21"', "invalid --box-size (box_size_voxels): '21' (text)"),
    ("section-not-a-table", None, "train = 3", "{file}: train = 3\nexpected: a table [train]"),
    ("top-level-name", None, "name = 5", "invalid --name (name): 5 (an integer) in {file}\nexpected: text"),
]


@pytest.mark.parametrize("section,line,message", [c[1:] for c in WRONG_TYPES], ids=[c[0] for c in WRONG_TYPES])
def test_toml_values_of_the_wrong_type_are_refused_naming_field_value_and_type(tmp_path, section, line, message):
    path = tmp_path / "run.toml"
    path.write_text((f"[{section}]\n" if section else "") + line + "\n")
    with pytest.raises(ConfigError) as error:
        build_run_config(RunKind.finetune, path, {"finetune": {"data_path": "x.h5"}})
    assert message.format(file=path) in str(error.value) + "\n"


def test_wrong_types_from_the_python_api_and_config_json_are_refused_too():
    with pytest.raises(ConfigError, match=re.escape("invalid --epochs (num_epochs): '3' (text)")):
        TrainConfig(num_epochs="3")
    with pytest.raises(ConfigError, match="invalid --dropout"):
        config_from_dict({"kind": "finetune", "finetune": {"data_path": "x.h5"}, "model": {"dropout": "0.5"}})
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)  # an integer is a number
