"""The serving function: one self-describing ONNX model on onnxruntime, behind a slim Litestar app.

Nothing here imports TensorFlow, Keras, tf2onnx or the converter: the ONNX file is the whole contract."""
