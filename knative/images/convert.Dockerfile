# The converter (`fish-convert`) for an in-cluster conversion Job: the `convert` extra (TensorFlow, tf2onnx,
# onnxruntime, MLflow) in a venv, with the convert package and the function's image decoder it checks parity
# with. Same conventions as function.Dockerfile: BASE is Debian bookworm with python3.11, numeric non-root user,
# bytecode compiled at build time, writes only under /tmp (HOME included: Keras keeps its config there).
#
#   buildah bud -f knative/images/convert.Dockerfile -t fish-convert .          (context: the repository root)
#   podman run --read-only --tmpfs /tmp fish-convert --tracking-uri http://mlflow:5000 --json
ARG BASE=python:3.11-slim

# The extra's requirements, read from pyproject.toml: the builder copies this file alone, so its cached layers
# (the dependencies' install is the long step) are reused until the extra's list itself changes.
FROM ${BASE} AS requirements
COPY pyproject.toml /src/
RUN python3.11 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["optional-dependencies"]["convert"]))' > /requirements.txt

FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# python:3.11-slim deletes its standard library's bytecode (the Debian stand-in has it): compile what is missing
# and keep only those files, for the final stage to copy. Their sources are the same files there (same BASE, same
# times), so the bytecode is valid, and the final stage needs no build step of its own.
RUN python3.11 -m venv /opt/venv \
 && stdlib="$(python3.11 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
 && touch /tmp/before \
 && python3.11 -m compileall -q -j 0 "$stdlib" \
 && mkdir /stdlib-bytecode \
 && find "$stdlib" -name '*.pyc' -newer /tmp/before -exec cp --parents -t /stdlib-bytecode {} +
# Dependencies first, so that a change to the code does not reinstall them. pip's downloads stay in a build
# cache mount, never in a layer. Bytecode with unchecked hashes: valid whatever the files' times after COPY,
# never rewritten (the root filesystem is read-only), and no source read to check it.
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install -r /tmp/requirements.txt \
 && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib
# Not editable, the `convert` extra only (already satisfied above); pip and setuptools have no use at run time.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY function ./function
COPY convert ./convert
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install ".[convert]" \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
 && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash \
      /opt/venv/lib/python3.11/site-packages/function /opt/venv/lib/python3.11/site-packages/convert

FROM ${BASE}
COPY --from=builder /stdlib-bytecode/ /
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=2
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["fish-convert"]
