"""tradeplane.operator: the kopf operator reconciling Strategy, ModelVersion and RiskBudget resources.

Pure ``render`` functions turn a spec into desired child objects; thin kopf handlers apply them.
This layer never touches market data.
"""

# This folder is the package ``tradeplane.operator``. If a tool puts the repository root on sys.path and
# something then imports the bare name ``operator`` before the standard library has (``python -S``, odd
# embedders), this file would be found instead of the stdlib module. Hand that import over to the real
# standard-library module so it is never shadowed, whatever the working directory.
if __name__ == "operator":  # pragma: no cover - exercised by tests/unit/test_packaging.py in a subprocess
    # Only modules that are already loaded may be used here: importing anything that itself needs
    # ``operator`` (collections, importlib.util) would recurse into this half-initialized file.
    import sys as _sys

    _ext = _sys.modules["_frozen_importlib_external"]
    _boot = _sys.modules["_frozen_importlib"]
    _stdlib_dir = _sys._stdlib_dir  # type: ignore[attr-defined]  # CPython 3.11+
    _path = _ext._path_join(_stdlib_dir, "operator.py")
    _spec = _ext.spec_from_file_location("operator", _path)
    _stdlib_operator = _boot.module_from_spec(_spec)
    _sys.modules["operator"] = _stdlib_operator  # the import system returns what sys.modules holds
    _spec.loader.exec_module(_stdlib_operator)
