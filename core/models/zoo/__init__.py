"""The model zoo: importing this package registers every model (one module each)."""
from core.models.zoo import (  # noqa: F401
    audio_resnet_attention,
    cnn_cbam_1d,
    har_transformer,
    imu_conformer,
    imu_se_convnext_lstm,
    meg_basic_cnn,
    meg_resnet,
    resnet1d,
    tcn_dilated,
)
