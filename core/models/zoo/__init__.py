"""The model zoo: importing this package registers every model. Each module here is one
model (a class plus one `register(...)` call); adding a model is adding a module."""
import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
