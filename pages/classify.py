"""Classify: drop a recording (or several) on a trained run; see what it predicts and where it looked."""
import streamlit as st

from core.infer import MAX_AUDIO_SECONDS, MAX_UPLOAD_BYTES, has_batchnorm
from dashboard import classify_parts as parts
from dashboard.engine import engine
from dashboard.parts import run_label
from dashboard.router import require_router

require_router()
st.title("Classify")
st.caption("Pick a trained run, give it a recording, and see the prediction over time and where the model looked.")
eng = engine()
store = eng.store
parts.demo_panel(eng)
runs = parts.classifiable_runs(store)
if not runs:
    st.info("No trained model yet: train the demo models above, or a run on Train.")
    st.stop()

by_id = {r["id"]: r for r in runs}
quality = {i: parts.quality_of(store, r) for i, r in by_id.items()}
ensembles = {parts.ENSEMBLE_OPTION + e.tag: e for e in parts.classifiable_ensembles(store)}
unscored = parts.ensemble_scores(store, list(ensembles.values()))  # each new ensemble's test accuracy, once
ids = list(by_id)
default = next((i for i, r in by_id.items() if r["name"] == "demo-audio"), ids[0])
choices = list(ensembles) + ids  # seed ensembles first, then every run (their members included)
run_id = st.selectbox("Model", choices, index=choices.index(default), key="classify.run",
                      format_func=lambda i: (parts.ensemble_label(store, ensembles[i]) if i in ensembles
                                             else f"{run_label(by_id[i])} · {quality[i].label()}"),
                      help="each run's data and its accuracy and macro-F1 on its own held-out split; an ensemble "
                           "answers with the mean of its seeds' probabilities, scored on their test split")
if run_id in ensembles:
    ensemble = ensembles[run_id]
    if ensemble.tag in unscored:
        st.warning(f"The ensemble's test accuracy could not be measured: {unscored[ensemble.tag]}")
    try:
        predictor = parts.ensemble_for(store, ensemble)
    except Exception as e:  # noqa: BLE001 - a broken run folder is a message, not a crash
        st.error(f"Ensemble {ensemble.tag} cannot be loaded: {e}")
        st.stop()
    st.caption(predictor.describe() + f" · runs {', '.join(ensemble.run_ids)} (tag {ensemble.tag}; "
               f"`python -m core evaluate --ensemble {ensemble.tag}`)")
else:
    if quality[run_id].warning():
        st.warning(quality[run_id].warning(), icon=":material/casino:")
    try:
        predictor = parts.predictor_for(store, by_id[run_id])
    except Exception as e:  # noqa: BLE001 - a broken run folder is a message, not a crash
        st.error(f"Run {run_id} cannot be loaded: {e}")
        st.stop()
    st.caption(predictor.describe() + f" · checkpoint {predictor.checkpoint.name if predictor.checkpoint else '?'} "
               f"(epoch {predictor.epoch})")
    predictor = parts.variant_picker(store, by_id[run_id], predictor)

audio = predictor.signal == "audio"
c1, c2, c3 = st.columns(3)
run_hop = round(predictor.stride / predictor.sample_rate, 3)  # a UEA series at 1 Hz: its whole length, e.g. 150 s
hop = c1.number_input("Hop between windows (s)", min_value=0.02, max_value=max(60.0, run_hop), step=0.05,
                      value=run_hop, key=f"classify.hop.{run_id}",
                      help=f"windows are the run's {predictor.window_seconds:g} s; a smaller hop gives a finer "
                           "timeline and costs more")
aggregate = c2.radio("Combine windows by", ["mean", "vote"], horizontal=True, key="classify.aggregate",
                     format_func=lambda a: "mean log-probability" if a == "mean" else "majority vote")
top_k = c3.slider("Top classes shown", 1, max(1, min(10, len(predictor.class_names))),
                  min(3, len(predictor.class_names)), key="classify.topk")

limit = (f"up to {MAX_UPLOAD_BYTES // 2**20} MiB per file"
         + (f" and {MAX_AUDIO_SECONDS / 60:g} min of audio" if audio else ""))
uploads = parts.batch_inputs(predictor, limit)
if not uploads:
    st.info(f"Upload {'a recording' if audio else 'an IMU CSV'} to classify it ({limit}). "
            + ("Try one from data/fsdd/recordings." if audio else "Try data/hapt (one subject's rows)."))
    st.stop()

variant = ""
if len(uploads) > 1 and has_batchnorm(parts.explainer(predictor).model):
    if st.toggle("Adapt to these recordings", key="classify.adapt",
                 help="Re-estimate the model's BatchNorm statistics on all the uploaded windows before classifying "
                      "them: test-time adaptation to a new speaker, wearer or device, no labels used. Upload ten or "
                      "more recordings of the one new speaker or device; on FSDD speakers held out of training it "
                      "took accuracy from 0.84 to 0.94."):
        with st.spinner("Adapting the model to these recordings…"):
            adapted, variant, line = parts.adapted_cached(
                predictor, [(u.data, u.name) for u in uploads if u.size <= MAX_UPLOAD_BYTES], float(hop))
        if adapted is None:
            st.error(f"Could not adapt: {line}", icon=":material/error:")
            variant = ""
        else:
            predictor = adapted
            st.caption(f":material/tune: {line}")

with st.spinner("Classifying…"):
    items = [parts.classify_upload(predictor, u, float(hop), aggregate, int(top_k), variant) for u in uploads]

for it in items:
    if it.error:
        st.error(it.error, icon=":material/error:")
ok = [it for it in items if it.prediction is not None]
if len(items) > 1:
    st.subheader(f"Batch: {len(items)} files")
    table = parts.batch_table(items)
    st.dataframe(table, hide_index=True, width="stretch", key="classify.batch")
    st.download_button("Download predictions (CSV)", table.to_csv(index=False).encode(), "predictions.csv",
                       "text/csv", key="classify.csv", icon=":material/download:")
if ok:
    parts.detail_section(parts.explainer(predictor), ok)  # an ensemble is explained by its first run
