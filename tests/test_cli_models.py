"""`python -m core models` and `python -m core profile`: what a person types and sees."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.__main__ import main
from core.models.registry import list_models, spec
from tests.conftest import ROOT


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_lists_every_zoo_model_with_its_typed_hyperparameters(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    models = {m["name"]: m for m in json.loads(out)}
    assert sorted(models) == list_models()
    for name, m in models.items():
        s = spec(name)
        assert m["input_kind"] == s.input_kind
        assert m["has_attention"] == s.has_attention
        assert [h["name"] for h in m["hyperparameters"]] == [h.name for h in s.hparams]
        for h in m["hyperparameters"]:
            assert {"name", "type", "default", "help"} <= set(h)
            if h["type"] in ("int", "float"):
                assert h["low"] <= h["default"] <= h["high"], (name, h)


def test_models_text_names_each_model(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    for name in list_models():
        assert name in out


def test_profile_json_has_the_documented_keys(capsys):
    name = "resnet1d" if "resnet1d" in list_models() else list_models()[0]
    code, out, _ = run_cli(capsys, "profile", name, "--batch", "8", "--no-measure", "--json")
    assert code == 0
    d = json.loads(out)
    assert {"params", "flops", "macs", "memory", "latency_ms", "layers", "unsupported_ops"} <= set(d)
    assert {"weights", "grads", "optimizer", "activations", "total"} <= set(d["memory"])
    assert {"estimated", "measured"} <= set(d["latency_ms"])
    assert d["batch_size"] == 8 and d["memory"]["total"] > 0 and d["flops"] == 2 * d["macs"]


def test_profile_set_changes_the_model(capsys):
    name = "resnet1d" if "resnet1d" in list_models() else pytest.skip("resnet1d not in the zoo yet")
    h = spec(name).hparam("base_channels")
    smaller = int(h.low)
    _, out_default, _ = run_cli(capsys, "profile", name, "--no-measure", "--no-cross-check", "--json")
    _, out_small, _ = run_cli(capsys, "profile", name, "--set", f"base_channels={smaller}", "--no-measure",
                              "--no-cross-check", "--json")
    assert json.loads(out_small)["params"]["total"] < json.loads(out_default)["params"]["total"]
    assert json.loads(out_small)["hparams"]["base_channels"] == smaller


def test_profile_text_shows_totals_and_the_layer_table(capsys):
    name = list_models()[0]
    code, out, _ = run_cli(capsys, "profile", name, "--batch", "4", "--no-measure")
    assert code == 0
    for word in ("params", "FLOPs", "memory", "latency", "layer", "one multiply-add = 2 FLOPs"):
        assert word in out


@pytest.mark.parametrize("argv,fragment", [
    (["profile", "no_such_model"], "unknown model 'no_such_model'"),
    (["profile", "{model}", "--set", "{number}=1e9"], "out of range"),
    (["profile", "{model}", "--set", "nonsense=1"], "has no hyperparameter 'nonsense'"),
    (["profile", "{model}", "--shape", "3"], "input shape"),
    (["profile", "{model}", "--shape", "six,128"], "--shape"),
    (["profile", "{model}", "--batch", "0"], "batch_size"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, fragment):
    name = list_models()[0]
    number = next(h.name for h in spec(name).hparams if h.type in ("int", "float"))
    argv = [a.format(model=name, number=number) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_real_cli_process_exits_non_zero_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "core", "profile", "no_such_model"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'no_such_model'")
    assert "Traceback" not in proc.stderr
