"""Build -> Train: the run config a sized model is handed over as (no Streamlit here)."""
from __future__ import annotations

from core import presets, spec
from core.errors import SigscopeError
from core.presets import DataSetup


def handoff_config(model: str, hparams: dict, knobs: dict, setup: DataSetup | None, shape: tuple) -> dict:
    """{"config": a run config dict, "note": what was carried and what had to change}.

    The model and its hyperparameters, and Build's batch size, optimizer, precision and
    checkpointing go as chosen; the data is the setup Build sized it for (with the rest of its
    preset's config when it came from one). A custom shape has no data behind it, so the first
    data setup that fits the model's input kind is taken instead, and the note says so."""
    from core.models import registry
    from dashboard.engine import quick_start_config

    kind = registry.spec(model).input_kind
    changed = []
    if setup is None:
        fitting = presets.data_setups(kind)
        if not fitting:
            raise SigscopeError(f"no data setup gives {kind} input; Train cannot run {model} yet")
        setup = fitting[0]
        changed.append(f"Build sized it for a custom input {tuple(shape)}; Train needs real data, so it uses "
                       f"{setup.label}")
    config = (presets.get(setup.preset).config if setup.preset else quick_start_config()).to_dict()
    config["name"] = ""
    config["data"] = setup.data.to_dict()
    config["model"] = {"name": model, "hparams": dict(hparams)}
    for key, value in knobs.items():
        spec._set(config, key, value)
    problems = spec.problems(config)
    if problems:
        changed.append("Train lists what to fix first: " + problems[0].message)
    note = f"From Build: **{model}** with your hyperparameters, on **{setup.label}**."
    if changed:
        note += " " + "; ".join(changed) + "."
    return {"config": config, "note": note}
