"""Deploy: a finished run leaves Sigscope as ONNX, int8 variants and a standalone bundle.

    export.py    ONNX (dynamo) and torch.export artifacts, Conv+BN folding, parity checks
    quantize.py  ONNX Runtime dynamic and static (QDQ, per-channel) int8
    qat.py       quantization-aware fine-tuning from a run's trained weights
    measure.py   each variant's size, latency, memory, accuracy and agreement; on-device estimates
    bundle.py    the zip with model.onnx, the input pipeline as JSON and a predict.py needing no Sigscope
"""
