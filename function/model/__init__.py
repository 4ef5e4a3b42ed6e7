"""The model: the ONNX file behind onnxruntime (`classifier`), the one slot it is loaded into (`slot`), and where
the file comes from (`source`: a path, or an MLflow registry over REST, `registry`, through a checked cache on disk,
`cache`; `bake` copies a version into an image at build time). No HTTP here."""
