"""The run form, drawn from the one spec (core.spec): every widget is a Param's, so no page
hand-codes a choice, a range or a list of options.

    form = RunForm("train")                        # widget keys "train:<config key>[@scope]"
    form.fill(config)                              # show a preset, a handed-off or a stored run's config
    data = form.section("data.", exclude=("data.augment",))
    form.augmentations()
    form.section("model.")
    config, problems = form.result()               # the validated RunConfig, or the reasons it is refused

A section draws the choices of its keys that apply, in declaration order, each from its
Param (choice -> selectbox, bool -> toggle, number -> number input, list of choices ->
multiselect, range -> range slider, ...). The value just drawn decides what applies next
(features="raw" hides the mel settings; a source shows its own options), so one pass draws a
consistent form. Conditional families are keyed by their owner (`train:model.hparams.depth@
har_transformer`), so two models or two sources never share a widget's state, and two browser
sessions never share anything (session state).
"""
from __future__ import annotations

import copy
import functools
import json
from typing import Any

import streamlit as st

from core import spec
from core.config import RunConfig
from core.errors import ConfigError, SigscopeError
from core.spec import Entry, Param

NO_PRESET = ""
READING = "Reading the data… (a first read computes and caches features, and any synthetic voices: up to a minute)"


# ---- one widget per Param -------------------------------------------------------------------
def widget_key(prefix: str, key: str, scope: str = "") -> str:
    return f"{prefix}:{key}" + (f"@{scope}" if scope else "")


def to_widget(p: Param, value: Any) -> Any:
    """A config value as the widget holds it."""
    if p.type == "list" and (p.item.type != "choice"):
        return "" if value is None else ", ".join(str(v) for v in value)
    if p.type == "list":
        return list(value or [])
    if p.type == "range":
        return (float(value[0]), float(value[1]))
    if p.type == "samples":
        return str(value)
    if p.type == "str":
        return value or ""
    if p.type == "float" and value is not None:
        return float(value)
    if p.type == "int" and value is not None:
        return int(value)
    return value


def from_widget(p: Param, value: Any) -> Any:
    """A widget's value as the config holds it (parsed by the Param; invalid text is kept
    as given so validation names it)."""
    if p.type in ("str",) and value == "" and p.nullable:
        return None
    if p.type == "list" and p.item.type != "choice":
        if not str(value).strip():
            return None if p.nullable else []
        try:
            return p.coerce(value)
        except ConfigError:
            return value
    if p.type == "range":
        return [float(value[0]), float(value[1])]
    if p.type == "samples":
        try:
            return p.coerce(value)
        except ConfigError:
            return value
    return value


def _fmt_number(p: Param, value: float | None) -> str:
    reference = value if value not in (None, 0) else (p.default if p.default not in (None, 0) else p.high)
    return "%.2e" if abs(reference) < 1e-2 else "%g"


def param_widget(p: Param, key: str, value: Any, restrict: list | None = None, on_change=None,
                 disabled: bool = False) -> Any:
    """Draw one Param's widget under `key` (session state wins over `value` once it exists)
    and return the config value it shows."""
    label = p.text_label[0].upper() + p.text_label[1:]
    help_text = p.help + (f" — {p.null_means} when empty" if p.nullable and p.null_means else "")
    helps = p.helps() if p.type == "choice" else (p.item.helps() if p.type == "list" else {})
    if helps:
        help_text += "\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in helps.items())
    shown = to_widget(p, value)
    fresh = key not in st.session_state
    common = dict(key=key, help=help_text, on_change=on_change, disabled=disabled)
    if p.type == "bool":
        kw = {"value": bool(shown)} if fresh else {}
        return st.toggle(label, **kw, **common)
    if p.type == "choice":
        options = list(restrict if restrict is not None else p.options())
        if p.nullable:
            options = [None] + options
        if not options:
            st.selectbox(label, ["—"], disabled=True, key=key + "#empty", help=help_text)
            return value
        if not fresh and st.session_state[key] not in options:
            del st.session_state[key]
            fresh = True
        def fmt(c):
            return (p.null_means or "—") if c is None else str(c)
        index = options.index(shown) if shown in options else 0
        kw = {"index": index} if fresh else {}
        return st.selectbox(label, options, format_func=fmt, **kw, **common)
    if p.type in ("int", "float"):
        is_int = p.type == "int"
        low, high = (int(p.low), int(p.high)) if is_int else (float(p.low), float(p.high))
        if restrict is not None:  # a narrower range here (e.g. the processes this machine holds)
            low, high = max(low, restrict[0]), min(high, restrict[-1])
        step = p.step if p.step is not None else (1 if is_int else (high - low) / 100 if not p.log else None)
        if is_int and step is not None:
            step = int(step)
        kw: dict[str, Any] = {"min_value": low, "max_value": high}
        if step is not None:
            kw["step"] = step
        if not is_int:
            kw["format"] = _fmt_number(p, shown)
        if p.nullable:
            kw["placeholder"] = p.null_means or "none"
        if fresh:
            kw["value"] = shown if (shown is not None or p.nullable) else (low if p.default is None else p.default)
        return st.number_input(label, **kw, **common)
    if p.type == "list":
        if p.item.type == "choice":
            options = list(p.item.options())
            if not fresh:
                st.session_state[key] = [v for v in st.session_state[key] if v in options]
            kw = {"default": [v for v in shown if v in options]} if fresh else {}
            return st.multiselect(label, options, **kw, **common)
        kw = {"value": shown} if fresh else {}
        text = st.text_input(label, placeholder=p.null_means or "comma-separated", **kw, **common)
        return from_widget(p, text)
    if p.type == "range":
        kw = {"value": shown} if fresh else {}
        step = p.step or (p.high - p.low) / 100
        return from_widget(p, st.slider(label, float(p.low), float(p.high), step=float(step), **kw, **common))
    if p.type == "samples":
        kw = {"value": shown} if fresh else {}
        text = st.text_input(label, placeholder="e.g. 128 or 2.56s", **kw, **common)
        return from_widget(p, text)
    kw = {"value": shown} if fresh else {}
    text = st.text_input(label, placeholder=p.null_means or "", **kw, **common)
    return from_widget(p, text)


# ---- the form ---------------------------------------------------------------------------------
class RunForm:
    """The widgets of one run config under a key prefix; see the module docstring."""

    def __init__(self, prefix: str, base: RunConfig | None = None) -> None:
        self.prefix = prefix
        stored = st.session_state.get(self._base_key)
        if base is not None and stored is None:
            stored = base.to_dict()
            st.session_state[self._base_key] = stored
        self.working: dict = copy.deepcopy(stored if stored is not None else RunConfig().to_dict())
        self.drawn: list[str] = []
        self.widget_keys: set[str] = set()  # the widgets drawn in this script run
        self.restrict: dict[str, list] = {}  # key -> the choices (or [low, high]) this machine offers
        self.hidden: set[str] = set()  # keys this form does not draw (their value stays as it is)

    @property
    def _base_key(self) -> str:
        return f"{self.prefix}:base"

    # -- filling ----------------------------------------------------------------------------
    def fill(self, config: RunConfig) -> None:
        """Make every widget show `config` (call before the widgets are drawn, e.g. in a
        callback or before the first section)."""
        fill_form(self.prefix, config)
        self.working = copy.deepcopy(config.to_dict())

    def keep(self) -> None:
        """Remember the working config as the form's base, for a page that draws one section at a
        time: the sections not drawn keep their values, and their widgets' leftover state (a preset
        filled it, or they were drawn before) goes, so when drawn again they show the config."""
        st.session_state[self._base_key] = copy.deepcopy(self.working)
        for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(self.prefix + ":")]:
            if key != self._base_key and key not in self.widget_keys:
                del st.session_state[key]

    def keep_within_choices(self, key: str) -> None:
        """Where the choice at `key` is not among `restrict[key]` (and its widget is not drawn to
        fall back by itself), take the first allowed one, as its selectbox would."""
        allowed = self.restrict.get(key)
        if allowed and spec.value_at(self.working, key) not in allowed:
            self._set(key, allowed[0])

    # -- drawing ----------------------------------------------------------------------------
    def section(self, prefix: str, exclude: tuple[str, ...] = (), columns: int = 3) -> dict:
        """Draw the applying choices whose keys start with `prefix` (advanced ones under "More
        settings"); returns {key: value}."""
        drawn: dict[str, Any] = {}
        self._grid(prefix, exclude, columns, False, drawn)
        if any(e.active and e.param.advanced for e in self._entries(prefix, exclude)):
            with st.expander("More settings"):
                self._grid(prefix, exclude, columns, True, drawn)
        return drawn

    def _entries(self, prefix: str, exclude: tuple[str, ...]) -> list[Entry]:
        return [e for e in spec.params(self.working) if e.key.startswith(prefix) and not e.key.startswith(exclude)]

    def _grid(self, prefix: str, exclude: tuple[str, ...], columns: int, advanced: bool, drawn: dict) -> None:
        cols = st.columns(columns)
        done: set[str] = set()
        slot = 0
        entries = self._entries(prefix, exclude)
        while True:
            entry = next((e for e in entries if e.key not in done and e.param.advanced == advanced), None)
            if entry is None:
                return
            done.add(entry.key)
            if not entry.active or entry.key in self.hidden:
                continue
            before = copy.deepcopy(self.working)
            with cols[slot % columns]:
                drawn[entry.key] = self._draw(entry)
            slot += 1
            if self.working != before:  # the value drawn may change what applies next: walk the spec again
                entries = self._entries(prefix, exclude)

    def _draw(self, entry: Entry) -> Any:
        key = widget_key(self.prefix, entry.key, entry.scope)
        self.widget_keys.update((key, key + "#empty"))
        on_change = functools.partial(_apply_suggested, self.prefix) if entry.key == "data.source" else None
        value = param_widget(entry.param, key, entry.value, restrict=self.restrict.get(entry.key),
                             on_change=on_change)
        if entry.param.describe_choice and entry.param.helps().get(value):
            st.caption(entry.param.helps()[value])
        self._set(entry.key, value)
        self.drawn.append(entry.key)
        return value

    def _set(self, key: str, value: Any) -> None:
        for selector, family in (("model.name", "hparams"), ("data.source", "options")):
            if key == selector:
                section = self.working[selector.split(".")[0]]
                if section.get("name" if selector == "model.name" else "source") != value:
                    section[family] = {}
        spec._set(self.working, key, value, create=True)

    def augmentations(self, signal: str | None) -> list[dict]:
        """The augmentation picker (those that fit the data's signal) and, for each chosen one,
        its probability and parameters from the augmentation's typed spec."""
        from core.data.augment import AUGMENTATIONS

        fitting = [name for name, a in AUGMENTATIONS.items() if signal is None or signal in a.signals]
        current = [a for a in self.working["data"].get("augment") or [] if isinstance(a, dict)]
        key = widget_key(self.prefix, "data.augment", self.working["data"].get("source", ""))
        self.widget_keys.add(key)
        if key in st.session_state:
            st.session_state[key] = [n for n in st.session_state[key] if n in fitting]
            kw = {}
        else:
            kw = {"default": [a["name"] for a in current if a.get("name") in fitting]}
        chosen = st.multiselect("Augmentation (training batches only)", fitting, key=key,
                                help="\n".join(f"- **{n}**: {AUGMENTATIONS[n].help}" for n in fitting), **kw)
        by_name = {a.get("name"): a for a in current}
        out = []
        for name in chosen:
            entry = copy.deepcopy(by_name.get(name) or {"name": name, "p": spec.AUGMENT_P.default, "params": {}})
            entry.setdefault("params", {})
            params = spec.augment_params(name)
            cols = st.columns(max(2, len(params)) if len(params) > 1 else 4)
            for i, p in enumerate(params):
                own = p.name.split(".", 1)[1] if "." in p.name else None
                value = entry.get("p", p.default) if own is None else entry["params"].get(own, p.default)
                shown = dataclass_replace(p, label=f"{name}: {p.name.split('.')[-1]}")
                param_key = widget_key(self.prefix, f"data.augment.{name}.{p.name}", name)
                self.widget_keys.add(param_key)
                with cols[i % len(cols)]:
                    got = param_widget(shown, param_key, value)
                if own is None:
                    entry["p"] = got
                else:
                    entry["params"][own] = got
            out.append(entry)
        self.working["data"]["augment"] = out
        return out

    # -- the result ---------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return copy.deepcopy(self.working)

    def result(self, environment: bool = True) -> tuple[RunConfig | None, list[str]]:
        """(the validated RunConfig, []) or (None, the reasons it is refused)."""
        try:
            return spec.validate(self.working, environment), []
        except SigscopeError as e:
            return None, str(e).splitlines()


def dataclass_replace(p: Param, **changes: Any) -> Param:
    import dataclasses
    return dataclasses.replace(p, **changes)


def widget_state(config: RunConfig | dict, prefix: str) -> dict[str, Any]:
    """Session-state values that make every widget of a RunForm show `config` (only the
    choices that apply: e.g. momentum only for SGD)."""
    data = config if isinstance(config, dict) else config.to_dict()
    out: dict[str, Any] = {}
    for e in spec.params(data):
        if not e.active or e.key.startswith("data.augment."):
            continue
        try:
            value = e.param.coerce(e.value, e.key)
        except ConfigError:
            value = e.value  # shown as stored; validation names the problem
        out[widget_key(prefix, e.key, e.scope)] = to_widget(e.param, value)
    augment = [a for a in data["data"].get("augment") or [] if isinstance(a, dict)]
    out[widget_key(prefix, "data.augment", data["data"].get("source", ""))] = [a["name"] for a in augment]
    for a in augment:
        for p in spec.augment_params(a["name"]):
            own = p.name.split(".", 1)[1] if "." in p.name else None
            value = a.get("p", p.default) if own is None else (a.get("params") or {}).get(own, p.default)
            out[widget_key(prefix, f"data.augment.{a['name']}.{p.name}", a["name"])] = to_widget(p, value)
    return out


def fill_form(prefix: str, config: RunConfig | dict) -> None:
    """Show `config` in the form under `prefix`: its widget values and its base (the values
    of choices that do not apply, kept as they were)."""
    data = config if isinstance(config, dict) else config.to_dict()
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(prefix + ":")]:
        del st.session_state[key]
    st.session_state.update(widget_state(data, prefix))
    st.session_state[f"{prefix}:base"] = copy.deepcopy(data)


def _apply_suggested(prefix: str) -> None:
    """on_change of the source picker: the new source's suggested settings (e.g. FSDD: stack4
    features, its standard split) go into the form, the rest stays."""
    from core.data.sources import get_source

    name = st.session_state.get(widget_key(prefix, "data.source"))
    try:
        source = get_source(name)
    except SigscopeError:
        return
    base = st.session_state.get(f"{prefix}:base")
    for key, value in source.suggested.items():
        p = spec.lookup(f"data.{key}")
        st.session_state[widget_key(prefix, f"data.{key}")] = to_widget(p, value)
        if base is not None:  # also where its widget is not drawn (it does not apply to this source)
            spec._set(base, f"data.{key}", value, create=True)


# ---- cached helpers -----------------------------------------------------------------------------
@st.cache_data(show_spinner=READING, max_entries=32)
def data_summary(data: dict) -> dict:
    """Load the data once per data config: what the model will see, or the error to show.
    Synthetic voices are counted, not made (their first synthesis takes minutes; the run makes them)."""
    from core.config import DataConfig
    from core.data import load
    from core.data.tts import deferred

    data, synthetic = deferred(data)
    try:
        bundle = load(DataConfig.from_dict(data))
    except SigscopeError as e:
        return {"error": str(e)}
    return {"input_kind": bundle.input_kind, "input_shape": tuple(bundle.input_shape),
            "class_names": list(bundle.class_names), "n_train": len(bundle.train) + synthetic,
            "n_val": len(bundle.val), "n_test": len(bundle.test), "sample_rate": bundle.sample_rate,
            "synthetic": synthetic}


@st.cache_data(show_spinner=False, max_entries=64)
def lr_curve_cached(config_json: str, steps_per_epoch: int) -> list[float]:
    from core.train import lr_curve
    return lr_curve(RunConfig.from_json(config_json), steps_per_epoch)


def presets_stamp() -> tuple:
    """The preset files with their sizes and modification times: the key the cached preset
    lists are read under, so a preset saved or edited (here or by the CLI) shows at once."""
    from core.presets import SHIPPED_DIR, saved_dir

    folders = [SHIPPED_DIR, saved_dir()]
    out = []
    for path in sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.json")):
        try:
            stat = path.stat()
        except OSError:  # removed since the listing: the next stamp leaves it out
            continue
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=4)
def presets_cached(stamp: tuple) -> tuple[list, dict[str, str]]:
    """(core.presets.list_presets(), core.presets.problems()) for these files: validating every
    preset walks the spec hundreds of times, too slow for each rerun."""
    from core.presets import list_presets, problems
    return list_presets(), problems()


@st.cache_data(show_spinner=False, max_entries=16)
def data_setups_cached(input_kind: str, stamp: tuple) -> list:
    """core.presets.data_setups for one input kind, read again when a preset file changes."""
    from core.presets import data_setups
    return data_setups(input_kind)


def most_processes() -> int:
    """How many processes one run may have on this machine (one per GPU, else per core)."""
    from core.launch import max_processes
    return max_processes()


def available_devices() -> list[str]:
    import torch
    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


# ---- presets ------------------------------------------------------------------------------------
def _apply_preset(prefix: str) -> None:
    """on_change of the preset picker: fill every widget of the form from the preset."""
    from core.presets import get

    name = st.session_state.get(f"{prefix}.preset", NO_PRESET)
    if name == NO_PRESET:
        return  # back to "none": the widgets keep what they show
    preset = get(name)
    config = preset.config
    config.name = preset.name
    fill_form(prefix, config)


def preset_section(prefix: str):
    """"Start from a preset": the picker; choosing one fills the whole form (still editable).
    Returns the chosen preset, or None."""
    listed, broken = presets_cached(presets_stamp())
    presets = {p.name: p for p in listed}
    if st.session_state.get(f"{prefix}.preset") not in (None, NO_PRESET, *presets):
        del st.session_state[f"{prefix}.preset"]
    name = st.selectbox("Start from a preset", [NO_PRESET, *presets], key=f"{prefix}.preset",
                        format_func=lambda n: "— none —" if n == NO_PRESET
                        else presets[n].title + (" (saved)" if presets[n].saved else ""),
                        on_change=_apply_preset, args=(prefix,),
                        help="configs known to train well on each dataset, and the ones you saved "
                             "(`python -m core presets`); choosing one fills every field below, which you can then "
                             "change")
    if broken:
        st.caption("Saved presets left out (they no longer validate): "
                   + "; ".join(f"{n}: {why}" for n, why in broken.items()))
    if name == NO_PRESET:
        return None
    preset = presets[name]
    st.caption(f"{preset.description} Runs on the bundled sample; tick **Full dataset** for all of it. "
               f"CLI: `python -m core train --preset {preset.name}`")
    return preset


def config_json(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True, default=str)
