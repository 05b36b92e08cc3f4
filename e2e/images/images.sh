#!/usr/bin/env bash
# Shared definitions for e2e/images/*.sh: which images there are, their names
# and where their archives live. Source it; do not execute it.

IMAGES_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# log, die, lock and COMMLAB_CACHE come from the control plane's scripts.
# shellcheck source-path=SCRIPTDIR source=../cluster/lib.sh
source "$IMAGES_SCRIPT_DIR/../cluster/lib.sh"

IMAGE_CACHE="$COMMLAB_CACHE/images"
# In build order: the commlab image first, since cargo is the slow part.
IMAGES=(commlab pause postgres nats)

# image_archive NAME: the OCI archive (an OCI image layout as a tar) of one image.
image_archive() { echo "$IMAGE_CACHE/$1.oci.tar"; }
# image_ref_file NAME: holds the full name the archive is imported under,
# written by build.sh (the NATS tag follows the host's nats-server).
image_ref_file() { echo "$IMAGE_CACHE/$1.ref"; }

# image_ref NAME: the full name of a built image.
image_ref() {
  local file
  file="$(image_ref_file "$1")"
  [[ -s "$file" && -f "$(image_archive "$1")" ]] ||
    die "image $1 is not built: run e2e/images/build.sh"
  cat "$file"
}

# known_image NAME: fails unless NAME is one of IMAGES.
known_image() {
  local i
  for i in "${IMAGES[@]}"; do [[ "$i" == "$1" ]] && return 0; done
  die "unknown image: $1 (one of: ${IMAGES[*]})"
}

# import_images SOCKET NAME...: imports each archive into the k8s.io namespace
# of the containerd at SOCKET under its full name (ctr does not normalise
# names: the kubelet looks the image up by exactly this name), then checks
# that containerd lists every one.
import_images() {
  local socket="$1" name ref listed
  shift
  [[ -S "$socket" ]] || die "no containerd socket at $socket"
  command -v ctr >/dev/null || die "ctr is missing (Debian package containerd)"
  for name in "$@"; do
    ref="$(image_ref "$name")"
    log "import $ref"
    ctr -a "$socket" -n k8s.io images import "$(image_archive "$name")" >/dev/null ||
      die "ctr could not import $(image_archive "$name")"
  done
  listed="$(ctr -a "$socket" -n k8s.io images ls -q)"
  for name in "$@"; do
    ref="$(image_ref "$name")"
    grep -qxF "$ref" <<<"$listed" || die "$ref is not listed by containerd at $socket after the import"
    log "listed $ref"
  done
}
