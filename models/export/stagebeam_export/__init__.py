"""stagebeam's checkpoint exporter: Hugging Face checkpoint folders to the ONNX folder layout the engine loads."""
