"""Convert a registered Keras model version into a verified, self-describing ONNX model version."""
