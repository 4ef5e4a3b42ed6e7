# For comparison only, not deployed: the team's original plan (tests/bench/baseline_server.py: TensorFlow loads
# the Keras model at start, FastAPI, uvicorn), built the same way as function.Dockerfile on the same BASE, so
# image size, cold start and memory can be set side by side. The Keras model is mounted at run time:
#
#   podman run -v KERAS_MODEL_DIR:/model:ro -e KERAS_MODEL_URI=/model -e CLASS_NAMES=a,b,c -e PORT=8081 ...
ARG BASE=python:3.11-slim

FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3.11 -m venv /opt/venv \
 && stdlib="$(python3.11 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
 && touch /tmp/before \
 && python3.11 -m compileall -q -j 0 "$stdlib" \
 && mkdir /stdlib-bytecode \
 && find "$stdlib" -name '*.pyc' -newer /tmp/before -exec cp --parents -t /stdlib-bytecode {} +
# The versions the project's own venv runs the benchmark's baseline with. mlflow-skinny and pandas (which
# mlflow.keras imports) rather than the whole mlflow: the lighter choice, in the baseline's favour.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install tensorflow-cpu==2.21.0 keras==3.15.1 mlflow-skinny==3.17.2 pandas==3.1.1 \
      fastapi==0.165.0 uvicorn==0.54.0 python-multipart==0.0.34 pillow==13.0.0 numpy==2.4.6 \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
 && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

FROM ${BASE}
COPY --from=builder /stdlib-bytecode/ /
COPY --from=builder /opt/venv /opt/venv
COPY tests/bench/baseline_server.py /app/baseline_server.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PORT=8080
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["python3.11", "/app/baseline_server.py"]
