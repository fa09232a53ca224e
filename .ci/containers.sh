#!/usr/bin/env bash
# A container runtime for the command-node tests, without any registry: podman with runc and
# cgroupfs (crun refuses this machine's hybrid cgroups and setrlimit), and an image imported
# from a busybox rootfs. Source it in the shell that runs pytest (.ci/run does): it exports
# CONTAINERS_CONF and leaves that shell's options as they were (the setup runs in a subshell).
#   apt-get install podman runc busybox-static && source .ci/containers.sh && python -m pytest
export CONTAINERS_CONF="${CONTAINERS_CONF:-/etc/containers/dagrq-ci.conf}"
(
  set -euo pipefail
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
  image=localhost/tiny:1
  if ! podman image exists "$image" 2>/dev/null; then
    root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/tmp"
    cp /bin/busybox "$root/bin/"
    for tool in sh cat wc echo sleep awk tr sort uniq head; do ln -sf busybox "$root/bin/$tool"; done
    tar -C "$root" -cf "$root.tar" .
    podman import -q "$root.tar" "$image" >/dev/null
    rm -rf "$root" "$root.tar"
  fi
) || { echo ".ci/containers.sh: the container setup failed" >&2; return 1 2>/dev/null || exit 1; }
