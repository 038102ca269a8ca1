"""Build: pick a model, set its knobs, see what it costs before training it. The input shape
and class count come from real data (a preset's or a source's), so every model shows a cost
card at its defaults; "Train this model" carries model, knobs and that data to Train."""
import streamlit as st

from core import spec
from core.errors import ConfigError
from core.models import registry
from dashboard import figures, forms
from dashboard.build_parts import handoff_config
from dashboard.parts import input_shape_widgets, latency_jobs, profile_cached
from dashboard.router import require_router
from dashboard.widgets import hparam_form

CUSTOM = "Custom input shape"

require_router()
st.title("Build")
st.caption("Pick a model and its hyperparameters; the cost figures update as you change them.")

names = registry.list_models()
name = st.selectbox("Model", names, index=names.index("har_transformer") if "har_transformer" in names else 0,
                    key="build.model", format_func=lambda n: f"{n} ({registry.spec(n).input_kind})")
model = registry.spec(name)
st.caption(f"{model.description}  ·  input: **{model.input_kind}**"
           + ("  ·  exposes attention" if model.has_attention else ""))


def latency_view(latency: dict) -> None:
    st.plotly_chart(figures.latency_bar(latency), width="stretch", key="build.latency")
    if latency.get("measured") and latency.get("estimated"):
        st.caption(f"Measured / estimated = {latency['measured'] / latency['estimated']:.2f} "
                   f"(the estimate assumes {latency.get('efficiency', 0):.0%} of this machine's "
                   f"{figures.human_count(latency.get('machine_flops_per_s', 0))}FLOP/s)")


def measured_latency(args: dict, estimate: dict) -> None:
    """The measurement when it is done; until then the estimate, and this part alone checks
    back every second (the rest of the page stays as it is)."""
    try:
        latency = latency_jobs().result(args)
    except Exception as e:  # noqa: BLE001 - a failed measurement is shown, the estimate stays
        st.warning(f"Measuring latency failed: {e}")
        latency_view(estimate)
        return
    if latency is not None:
        latency_view(latency)
        return

    @st.fragment(run_every=1.0)
    def waiting() -> None:
        try:
            finished = latency_jobs().result(args) is not None
        except Exception:  # noqa: BLE001 - failed: the rerun below says so
            finished = True
        if finished:
            st.rerun()  # the whole page, once: it draws the measurement and stops checking
        latency_view(estimate)
        st.caption("Measuring latency on this machine in the background…")

    waiting()


@st.fragment
def build_view() -> None:
    setups = {s.label: s for s in forms.data_setups_cached(model.input_kind, forms.presets_stamp())}
    c1, c2 = st.columns([3, 2])
    label = c1.selectbox("Sized for", [*setups, CUSTOM], key=f"build.setup.{name}",
                         help="the input shape and class count come from this data; Train this model takes it along")
    if label == CUSTOM or not setups:
        with c2:
            shape = input_shape_widgets(model, "build.shape")
        num_classes = int(c2.number_input("Classes", 2, 1000, 6, key=f"build.classes.{name}"))
        setup = None
    else:
        setup = setups[label]
        summary = forms.data_summary(setup.data.to_dict())
        if "error" in summary:
            st.error(f"This data cannot be loaded: {summary['error']}")
            return
        shape, num_classes = tuple(summary["input_shape"]), len(summary["class_names"])
        c2.caption(f"input **{shape}** · **{num_classes}** classes ({', '.join(summary['class_names'][:12])}"
                   f"{'…' if num_classes > 12 else ''})")
    with st.expander("Hyperparameters", expanded=True):
        hparams = hparam_form(model, "build", columns=3)
    c1, c2, c3, c4 = st.columns(4)
    knobs = {}
    for col, key in zip((c1, c2, c3, c4), ("train.batch_size", "optim.name", "train.amp", "train.grad_checkpointing")):
        p = spec.lookup(key)
        with col:
            knobs[key] = forms.param_widget(p, forms.widget_key("build", key), p.default,
                                            disabled=key == "train.grad_checkpointing" and not model.supports_checkpointing)
    args = dict(name=name, hparams=hparams, input_shape=shape, num_classes=num_classes,
                batch_size=int(knobs["train.batch_size"]), optimizer=knobs["optim.name"], amp=knobs["train.amp"],
                grad_checkpointing=bool(knobs["train.grad_checkpointing"]) and model.supports_checkpointing)
    try:
        report = profile_cached(measure_latency=False, **args)
    except ConfigError as e:
        st.error(f"This combination cannot be built: {e}")
        return
    params, memory = report["params"], report["memory"]
    if st.button("Train this model →", key="build.to_train",
                 help="open Train with this model, these hyperparameters and this data"):
        st.session_state["handoff.run"] = handoff_config(name, hparams, knobs, setup, shape)
        st.switch_page("pages/train.py")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Parameters", figures.human_count(params["total"]),
              help=f"{params['trainable']:,} trainable of {params['total']:,}")
    m2.metric("FLOPs / batch", figures.human_count(report["flops"]), help=report.get("flops_convention", ""))
    m3.metric("MACs / batch", figures.human_count(report["macs"]))
    m4.metric("Training memory", figures.human_bytes(memory["total"]))
    left_out = report.get("unsupported_ops") or []
    unpriced = [u for u in left_out if u.get("counter") == "flop_counter" and "by convention" not in u.get("note", "")]
    if unpriced:
        st.warning("FLOPs leave out operators no counter could price: "
                   + ", ".join(f"{u['op']} ×{u.get('calls', '?')}" for u in unpriced))
    if left_out:
        with st.expander(f"Operators not counted as FLOPs ({len(left_out)})"):
            st.dataframe(figures.layer_table(left_out), hide_index=True, width="stretch")
    st.plotly_chart(figures.memory_bar(memory), width="stretch")

    measure = st.toggle("Measure latency on this machine", key="build.measure",
                        help="runs real forward passes at this batch size (a few seconds, in the background), "
                             "next to the estimate")
    if measure:
        latency_jobs().request(args)
        measured_latency(args, report["latency_ms"])
    else:
        latency_view(report["latency_ms"])
    # Only the open section is drawn (a switch reruns this fragment): the block diagram first, the
    # layer table and its chart (the page's heaviest elements) on a click.
    blocks_tab, layers_tab = st.tabs(["Block structure", "Layers"], key="build.detail", on_change="rerun")
    if blocks_tab.open:
        with blocks_tab:
            st.html(figures.block_flow(report.get("blocks", [])))
    if layers_tab.open:
        with layers_tab:
            left, right = st.columns([3, 2])
            with left:
                table = figures.layer_table(report["layers"])
                st.dataframe(figures.highlight_heaviest(table), hide_index=True, width="stretch", height=420)
                st.caption("The three heaviest layers by their own FLOPs are highlighted; click a column header to "
                           "sort.")
            with right:
                st.plotly_chart(figures.layer_flops_bar(report["layers"]), width="stretch")

build_view()
