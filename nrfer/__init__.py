"""nrfer: the FER training library (PyTorch + timm; no Ray, no MLflow)."""

import os as _os

# Importing timm makes torch's inductor create `torchinductor_<user>` in the temp folder
# (tempfile.gettempdir()), where it outlives every command. Its cache goes to the user's
# cache folder instead, unless the user chose one (TORCHINDUCTOR_CACHE_DIR).
_os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR",
    _os.path.join(
        _os.environ.get("XDG_CACHE_HOME") or _os.path.join(_os.path.expanduser("~"), ".cache"),
        "nrfer",
        "torchinductor",
    ),
)
