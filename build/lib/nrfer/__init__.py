"""nrfer: the FER training library (PyTorch + timm; no Ray, no MLflow)."""
