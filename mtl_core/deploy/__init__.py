"""Deployment: int8 quantization and pruning (``compress``), ONNX and TorchScript export with
parity checks (``export``)."""
