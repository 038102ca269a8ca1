"""Classify a user's recording with a trained run and show where the model looked.

    predictor = load_run("20250101-120000-3fa9c2")          # rebuilt from config.json + best.pt
    pred = classify_file(predictor, "my_recording.wav", top_k=3)
    pred.label, pred.confidence, pred.top_k                  # the clip's answer
    ensemble = load_ensemble(["RUN_A", "RUN_B", "RUN_C"])    # several runs answer together
    pred = classify_file(ensemble, "my_recording.wav")       # the mean of their window probabilities
    scores = evaluate_split(ensemble, "test")                 # accuracy on the runs' own test split
    adapted = adapt_to_files(predictor, new_speaker_clips)   # BatchNorm statistics of a new speaker

One module per job: `loading` (a run -> Predictor), `ensemble` (runs that answer together;
one run is an ensemble of one), `reading` (files and uploads -> windows), `predict`
(classifying and explaining), `adapt` (test-time BatchNorm adaptation), `evaluate` (scoring a
run on its own split).

The run's own pipeline is reproduced exactly: audio is decoded (content-checked) to the
run's sample rate, cut into the training clip length every `hop` seconds (a file shorter
than one clip is zero-padded at the end, as in training), featurized with the run's
DataConfig and normalized with the stored training-split statistics. IMU CSVs are parsed
by the same reader as training, one stream per subject/session, windowed with the run's
window and stride (or `hop`).

Limits (stated to the user): uploads up to MAX_UPLOAD_BYTES, audio up to MAX_AUDIO_SECONDS,
at most MAX_WINDOWS windows per file. Nothing read is executed or unpickled: audio goes
through soundfile/librosa decoders, CSVs through pandas' text parser, checkpoints through
`torch.load(weights_only=True)`.
"""
from core.infer.adapt import Adapted, adapt_batchnorm, adapt_to_files, adapt_to_uploads, has_batchnorm
from core.infer.ensemble import Ensemble, as_ensemble, load_ensemble
from core.infer.evaluate import SplitProbabilities, evaluate_split, split_probabilities
from core.infer.loading import BATCH, Predictor, load_run, load_run_dir, predictor_from_loaded
from core.infer.predict import (AGGREGATES, EXPLAIN_MODES, ClassTrack, Prediction, Summary, aggregate_probs,
                                classify_bytes, classify_file, classify_files, classify_signal, summarize,
                                window_attention)
from core.infer.reading import (MAX_AUDIO_SECONDS, MAX_UPLOAD_BYTES, MAX_WINDOWS, detect_kind, display_name,
                                error_line, sliding_starts, upload_suffix)

__all__ = ["AGGREGATES", "Adapted", "BATCH", "ClassTrack", "EXPLAIN_MODES", "Ensemble", "MAX_AUDIO_SECONDS",
           "MAX_UPLOAD_BYTES", "MAX_WINDOWS", "Prediction", "Predictor", "SplitProbabilities", "Summary",
           "adapt_batchnorm", "adapt_to_files", "adapt_to_uploads", "aggregate_probs", "as_ensemble",
           "classify_bytes", "classify_file", "classify_files", "classify_signal", "detect_kind", "display_name",
           "error_line",
           "evaluate_split", "has_batchnorm", "load_ensemble", "load_run", "load_run_dir", "predictor_from_loaded",
           "sliding_starts", "split_probabilities", "summarize", "upload_suffix", "window_attention"]
