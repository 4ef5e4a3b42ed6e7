# The serving function (`python -m function`): the `function` extra alone in a venv, bytecode compiled at build
# time, a numeric non-root user, nothing written outside /tmp (it runs with a read-only root filesystem).
#
#   buildah bud -f knative/images/function.Dockerfile -t fish-function .        (context: the repository root)
#   optional: --build-arg BASE=...   --build-arg BAKE_MODEL_URI=models:/NAME/VERSION|@ALIAS
#             --build-arg BAKE_TRACKING_URI=http://mlflow:5000
#
# BASE must be Debian bookworm with python3.11 and its venv module: python:3.11-slim has it in /usr/local/bin,
# the local stand-in (knative/images/build.sh) in /usr/bin, so everything here goes through `python3.11` and the
# venv's own paths. Builder and final stage share BASE, so the venv's interpreter link is valid in both.
ARG BASE=python:3.11-slim

# The extra's requirements, read from pyproject.toml: the builder copies this file alone, so its cached layers
# (the dependencies' install is the long step) are reused until the extra's list itself changes.
FROM ${BASE} AS requirements
COPY pyproject.toml /src/
RUN python3.11 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["optional-dependencies"]["function"]))' > /requirements.txt

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
# Then what the function never imports goes (the venv layer measured 292 MB with it, 236 MB without): Litestar's
# example generator (polyfactory and faker, 27 MB: only for OpenAPIConfig(create_examples=True), which the
# function does not set) and its command line's rich, rich-click and pygments (14 MB; uvicorn's click stays);
# onnxruntime's Python tools for building and quantizing models (9 MB); numpy's tests (17 MB). pip would put the
# first back to satisfy Litestar's metadata, so the function's own install below takes --no-deps (its
# dependencies are these, already here). tests/test_images.py serves the docs, a HEIC photo and the page without.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes --quiet polyfactory faker rich rich-click pygments \
 && site=/opt/venv/lib/python3.11/site-packages \
 && rm -r "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools" \
 && find "$site/numpy" -type d -name tests -prune -exec rm -r {} + \
 && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib
# Not editable, the `function` extra only (installed above), and the function package alone: convert/
# is not copied. The package carries the web UI and the API documentation's Swagger UI, as any wheel built from
# the checkout does (setup.py copies the files the function serves, by the function's own list of them, from
# web/: build.sh ran `npm ci` there on the build host, and .dockerignore lets only those files in; no npm in the
# image). pip, setuptools and the console scripts of the other extras have no use at run time.
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY function ./function
COPY web ./web
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --no-deps ".[function]" \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
 && rm /opt/venv/bin/fish-convert /opt/venv/bin/fish-demo \
 && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash /opt/venv/lib/python3.11/site-packages/function

# One registry version baked in, if asked: the project's own fetch() writes the model cache's layout here, and at
# run time (MODEL_BAKED_DIR) that version is read from this layer instead of downloaded, and serves when the
# registry is unreachable; /model_info still names the registry's name, version and alias. Without the argument
# the folder is empty and the image follows MODEL_URI through the registry.
FROM builder AS model
ARG BAKE_MODEL_URI=""
ARG BAKE_TRACKING_URI=""
# An alias moves: a build that bakes asks the registry again rather than reuse a cached layer (build.sh passes
# the time here; a value that changes invalidates this stage's cache).
ARG BAKE_REQUESTED_AT=""
RUN mkdir -p /opt/fish-function/models \
 && if [ -n "$BAKE_MODEL_URI" ]; then \
      MLFLOW_TRACKING_URI="$BAKE_TRACKING_URI" /opt/venv/bin/python -P -m function.model.bake \
        "$BAKE_MODEL_URI" /opt/fish-function/models; \
    fi

FROM ${BASE}
COPY --from=builder /stdlib-bytecode/ /
COPY --from=builder /opt/venv /opt/venv
COPY --from=model /opt/fish-function/models /opt/fish-function/models
ARG BAKE_MODEL_URI=""
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PORT=8080 \
    MODEL_CACHE_DIR=/tmp/fish-function/models \
    MODEL_BAKED_DIR=/opt/fish-function/models \
    MODEL_URI=${BAKE_MODEL_URI:-models:/fish-classification-mobilenetv2@onnx}
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# -P: the working directory (/tmp, writable) is not put on sys.path
ENTRYPOINT ["python3.11", "-P", "-m", "function"]
