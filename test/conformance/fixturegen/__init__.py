"""Tiny random-weight VLM fixtures in the layout onnx-community publishes (see ../FIXTURES.md)."""
