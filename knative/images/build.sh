#!/usr/bin/env bash
# Build the project's images with buildah: no Docker daemon and no registry of base images needed.
#
#   knative/images/build.sh [IMAGE...]     IMAGE: function (default), convert, baseline; built as localhost/fish-IMAGE:TAG
#
# Environment:
#   BASE                 the base image; unset: a local stand-in for python:3.11-slim made from Debian bookworm's own
#                        python3.11 (mmdebstrap, imported with podman), kept in podman's storage and as a tarball
#                        under FISH_IMAGE_CACHE (default ~/.cache/fish-images), so it is made once
#   TAG                  the images' tag (default: dev)
#   BAKE_MODEL_URI       function image only: a registry version to bake in (models:/NAME/VERSION or @ALIAS), read
#   BAKE_TRACKING_URI    from this MLflow tracking server at build time (the build shares the host's network)
#   PIP_CONFIG, CA_BUNDLE  mounted read-only into the build so pip reaches the package index as this host does
#                        (defaults: /etc/pip.conf and /etc/ssl/certs/ca-certificates.crt, each if it exists)
#
# Needs, as root: buildah, podman, and for the stand-in mmdebstrap (Debian: apt-get install buildah podman runc
# mmdebstrap). Builds are layered: a second build reuses every step whose inputs did not change, and the image
# the tag named before is removed (its layers would otherwise pile up, gigabytes a build).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."

TAG=${TAG:-dev}
CACHE=${FISH_IMAGE_CACHE:-$HOME/.cache/fish-images}
PIP_CONFIG=${PIP_CONFIG:-/etc/pip.conf}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# As debian:bookworm-slim (python:3.11-slim's base) is made: minbase, without docs, manuals and translations.
DEBIAN_ARGS=(
  --variant=minbase --include=python3.11,python3.11-venv,ca-certificates
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
  bookworm
)
MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)

stand_in() {
  # The tag names the recipe, so a changed recipe makes a new base and an unchanged one is never made again.
  local recipe tag tarball
  recipe=$(printf '%s\n' "${DEBIAN_ARGS[@]}" "${MIRRORS[@]}" | sha256sum | cut -c1-12)
  tag="localhost/fish-base:bookworm-python3.11-$recipe"
  tarball="$CACHE/bookworm-python3.11-$recipe.tar"
  if ! podman image exists "$tag"; then
    if [[ ! -f $tarball ]]; then
      mkdir -p "$CACHE"
      echo "making the base stand-in with mmdebstrap (a few minutes, once)" >&2
      mmdebstrap --quiet --format=tar "${DEBIAN_ARGS[@]}" "$tarball.partial" "${MIRRORS[@]}" >&2
      mv "$tarball.partial" "$tarball"
    fi
    podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3.11"]' "$tarball" "$tag" >/dev/null
  fi
  echo "$tag"
}

build() {
  local image=$1 mounts=()
  [[ -f $PIP_CONFIG ]] && mounts+=(--volume "$PIP_CONFIG:/etc/pip.conf:ro")
  [[ -f $CA_BUNDLE ]] && mounts+=(--volume "$CA_BUNDLE:$CA_BUNDLE:ro")
  local args=(--build-arg "BASE=$BASE")
  if [[ $image == function && -n ${BAKE_MODEL_URI:-} ]]; then
    args+=(--build-arg "BAKE_MODEL_URI=$BAKE_MODEL_URI" --build-arg "BAKE_TRACKING_URI=${BAKE_TRACKING_URI:-}"
      --build-arg "BAKE_REQUESTED_AT=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)")
  fi
  if [[ $image == function && ! web/node_modules/.package-lock.json -nt web/package-lock.json ]]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error) >&2  # the UI's Bootstrap and Chart.js, from npm
  fi
  local name="localhost/fish-$image:$TAG" previous
  previous=$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
  echo "building $name on $BASE" >&2
  buildah bud --quiet --isolation chroot --network host --layers "${mounts[@]}" "${args[@]}" \
    --file "knative/images/$image.Dockerfile" --tag "$name" . >&2
  # A rebuild moves the tag: the image it named would stay behind untagged with the layers only it used (the
  # final stage's copy of the venv: 2.2 GB for convert, 0.4 GB for the function, at every code change or bake).
  # Remove it, and its untagged parents with it, unless a container still uses it.
  if [[ -n $previous && $previous != "$(podman image inspect --format '{{.Id}}' "$name")" ]]; then
    podman rmi "$previous" >/dev/null 2>&1 || echo "kept the previous $name ($previous): a container uses it" >&2
  fi
  echo "$name"
}

if [[ -z ${BASE:-} ]]; then
  BASE=$(stand_in)
fi
for image in "${@:-function}"; do
  build "$image"
done
