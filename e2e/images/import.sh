#!/usr/bin/env bash
# Imports the images build.sh made into the k8s.io namespace (the kubelet's)
# of one containerd, under their full names, and checks they are listed.
#
#   e2e/images/import.sh SOCKET [IMAGE...]   every built image, or the ones named
#
# IMAGE is one of: commlab pause postgres nats.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=images.sh
source "$(dirname "${BASH_SOURCE[0]}")/images.sh"

[[ -n "${1:-}" && "$1" != -* ]] || die "usage: import.sh SOCKET [IMAGE...] (IMAGE: ${IMAGES[*]})"
socket="$1"
shift
names=("$@")
for name in "${names[@]}"; do known_image "$name"; done
((${#names[@]})) || names=("${IMAGES[@]}")
import_images "$socket" "${names[@]}"
