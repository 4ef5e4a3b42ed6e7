"""The team's plan, as the baseline: TensorFlow loads the Keras model at start, Pillow preprocessing,
`model.predict` per request, served by uvicorn like the function. Run: python -m tests.bench.baseline_server."""

from __future__ import annotations

import io
import os

import mlflow.keras
import numpy as np
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

model = mlflow.keras.load_model(os.environ["KERAS_MODEL_URI"])
classes = os.environ.get("CLASS_NAMES", "").split(",")
height, width = model.inputs[0].shape[1:3]
app = FastAPI()


@app.post("/predict")
def predict(file: UploadFile = File(...)):  # noqa: B008 - FastAPI's idiom
    image = Image.open(io.BytesIO(file.file.read())).convert("RGB").resize((width, height))
    batch = np.asarray(image, dtype=np.float32)[None] / 255.0
    probabilities = model.predict(batch, verbose=0)[0]
    best = int(probabilities.argmax())
    return {"class": classes[best], "confidence": float(probabilities[best])}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
