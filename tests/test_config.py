"""RunConfig: a run is fully described by its JSON."""
import pytest

from core.config import RunConfig, parse_sets
from core.errors import ConfigError


def test_default_config_round_trips_through_json():
    cfg = RunConfig(name="quick")
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.train.early_stopping.patience == cfg.train.early_stopping.patience


def test_overrides_set_nested_values_and_parse_cli_strings():
    cfg = RunConfig().with_overrides(parse_sets(["train.epochs=3", "model.hparams.num_stages=2",
                                                 "data.source=hapt", "data.options.classes=all12",
                                                 "train.grad_clip=null", "data.augment.jitter.p=0.25"]))
    assert cfg.train.epochs == 3
    assert cfg.model.hparams["num_stages"] == 2 and cfg.model.hparams["block"] == "basic", "defaults filled in"
    assert cfg.data.options["classes"] == "all12"
    assert cfg.train.grad_clip is None
    assert cfg.data.augment == [{"name": "jitter", "p": 0.25, "params": {"sigma": 0.05}}]


def test_unknown_keys_are_refused_by_name():
    with pytest.raises(ConfigError, match="epochz"):
        RunConfig().with_overrides({"train.epochz": 3})
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig.from_dict({"trainer": {}})
    with pytest.raises(ConfigError, match="key=value"):
        parse_sets(["epochs"])


def test_invalid_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.from_json("{not json")
