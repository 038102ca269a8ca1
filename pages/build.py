"""Build: pick a model, set its knobs, see what it costs before training it."""
import streamlit as st

from core.errors import ConfigError
from core.models import registry
from dashboard import figures
from dashboard.parts import input_shape_widgets, profile_cached
from dashboard.router import require_router
from dashboard.widgets import hparam_form

require_router()
st.title("Build")
st.caption("Pick a model and its hyperparameters; the cost figures update as you change them.")

names = registry.list_models()
name = st.selectbox("Model", names, index=names.index("har_transformer") if "har_transformer" in names else 0,
                    key="build.model")
spec = registry.spec(name)
st.caption(f"{spec.description}  ·  input: **{spec.input_kind}**"
           + ("  ·  exposes attention" if spec.has_attention else ""))


@st.fragment
def build_view() -> None:
    with st.expander("Hyperparameters", expanded=True):
        hparams = hparam_form(spec, "build.hp", columns=3)
    c1, c2, c3, c4, c5 = st.columns(5)
    with c1:
        shape = input_shape_widgets(spec, "build.shape")
    num_classes = c2.number_input("Classes", 2, 1000, 6, key="build.classes")
    batch = c3.number_input("Batch size", 1, 4096, 64, key="build.batch")
    optimizer = c4.selectbox("Optimizer", ["adamw", "adam", "sgd"], key="build.opt")
    amp = c5.selectbox("Mixed precision", ["off", "bf16", "fp16"], key="build.amp")
    checkpointing = st.toggle("Gradient checkpointing", key="build.ckpt",
                              disabled=not spec.supports_checkpointing,
                              help="Recompute block activations in backward: less memory, more compute."
                              + ("" if spec.supports_checkpointing else " This model does not support it."))
    args = dict(name=name, hparams=hparams, input_shape=shape, num_classes=int(num_classes),
                batch_size=int(batch), optimizer=optimizer, amp=amp, grad_checkpointing=checkpointing)
    try:
        report = profile_cached(measure_latency=False, **args)
    except ConfigError as e:
        st.error(f"This combination cannot be built: {e}")
        return
    params, memory = report["params"], report["memory"]
    if st.button("Train this model →", key="build.to_train",
                 help="open Train with this model and these hyperparameters"):
        st.session_state["handoff.model"] = {"name": name, "hparams": hparams}
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
                        help="runs real forward passes at this batch size (a few seconds), next to the estimate")
    latency = profile_cached(measure_latency=True, **args)["latency_ms"] if measure else report["latency_ms"]
    st.plotly_chart(figures.latency_bar(latency), width="stretch")
    if latency.get("measured") and latency.get("estimated"):
        st.caption(f"Measured / estimated = {latency['measured'] / latency['estimated']:.2f} "
                   f"(the estimate assumes {latency.get('efficiency', 0):.0%} of this machine's "
                   f"{figures.human_count(latency.get('machine_flops_per_s', 0))}FLOP/s)")
    st.subheader("Layers")
    left, right = st.columns([3, 2])
    with left:
        table = figures.layer_table(report["layers"])
        st.dataframe(figures.highlight_heaviest(table), hide_index=True, width="stretch", height=420)
        st.caption("The three heaviest layers by their own FLOPs are highlighted; click a column header to sort.")
    with right:
        st.plotly_chart(figures.layer_flops_bar(report["layers"]), width="stretch")
    st.subheader("Block structure")
    st.graphviz_chart(figures.block_diagram(report.get("blocks", [])))


build_view()
