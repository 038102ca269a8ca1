"""The model zoo: importing this package registers every model (one module each)."""
from core.models.zoo import resnet1d  # noqa: F401
