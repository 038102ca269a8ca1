"""The registry validates hyperparameters and input shapes with one clear line."""
import random

import pytest
from torch import nn

from core.errors import ConfigError
from core.models.registry import HParam, ModelSpec


def _spec():
    return ModelSpec(
        name="tiny", builder=lambda in_channels, num_classes, seq_len, width: nn.Linear(in_channels, num_classes),
        input_kind="imu", default_input=(3, 32),
        hparams=(HParam("width", "int", 8, "hidden width", low=4, high=64),
                 HParam("act", "choice", "relu", choices=("relu", "gelu")),
                 HParam("lr", "float", 1e-3, low=1e-5, high=1e-1, log=True),
                 HParam("bias", "bool", True)),
        min_length=lambda hp: 16)


def test_resolve_coerces_cli_strings():
    hp = _spec().resolve({"width": "16", "act": "gelu", "bias": "false", "lr": "0.01"})
    assert hp == {"width": 16, "act": "gelu", "bias": False, "lr": 0.01}


@pytest.mark.parametrize("overrides, message", [
    ({"width": 1000}, "width=1000 is out of range: allowed int in [4, 64]"),
    ({"width": 2.5}, "width=2.5 is not a whole number"),
    ({"act": "tanh"}, "act='tanh' is not a known choice: allowed one of 'relu', 'gelu'"),
    ({"depth": 3}, "has no hyperparameter 'depth'"),
])
def test_bad_values_name_the_value_and_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        _spec().resolve(overrides)


def test_input_shape_checks():
    with pytest.raises(ConfigError, match="too short"):
        _spec().resolve({}, (3, 8))
    with pytest.raises(ConfigError, match="does not fit a model that takes imu input"):
        _spec().resolve({}, (3, 4, 32))


def test_samples_stay_in_range():
    rng = random.Random(0)
    for _ in range(200):
        for h in _spec().hparams:
            assert h.coerce(h.sample(rng)) is not None
