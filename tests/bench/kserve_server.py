"""KServe's predictor, as a team would serve the same ONNX file with KServe's Python model server: a custom
`kserve.Model` that opens an onnxruntime session at load (its defaults), decodes a base64 JPEG with Pillow and
answers KServe's v1 `POST /v1/models/fish:predict`. For `task bench`'s cold start side by side; gRPC is off (one
port, and less for it to start). Run in its own venv (kserve, onnxruntime, Pillow): python kserve_server.py."""

from __future__ import annotations

import base64
import io
import json
import os

import kserve
import numpy as np
import onnxruntime as ort
from PIL import Image


class Fish(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.session = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.classes = json.loads(metadata["class_names"])
        self.height, self.width = self.session.get_inputs()[0].shape[1:3]
        self.ready = True
        return self.ready

    def predict(
        self, payload: dict, headers: dict | None = None, response_headers: dict | None = None
    ) -> dict:
        predictions = []
        for instance in payload["instances"]:
            image = Image.open(io.BytesIO(base64.b64decode(instance["b64"]))).convert("RGB")
            pixels = np.asarray(image.resize((self.width, self.height)), dtype=np.uint8)[None]
            (probabilities,) = self.session.run(None, {"image": pixels})[0]
            best = int(probabilities.argmax())
            predictions.append({"class": self.classes[best], "confidence": float(probabilities[best])})
        return {"predictions": predictions}


if __name__ == "__main__":
    model = Fish("fish", os.environ["MODEL_PATH"])
    kserve.ModelServer(http_port=int(os.environ["PORT"]), enable_grpc=False).start([model])
