"""ONNX Runtime sessions and the streaming sweep engine."""
