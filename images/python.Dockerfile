# execbox runtime image for python and bash, for machines that can pull from a registry.
# Machines without a registry build the same tag offline: see build-offline.sh.
#
#   docker build -t execbox/python:bookworm - < images/python.Dockerfile
#
# Debian's own python3 with the data packages contexts expect (numpy, pandas, matplotlib), the
# same packages the offline build and the local executor's host carry.
# The service starts containers with its own user (65534), a read-only root,
# a tmpfs on /work and no network; this image only has to provide the tools.
FROM debian:bookworm-slim

LABEL execbox.image=python
# images/build.sh rebuilds an image without this label.
LABEL execbox.python-data=numpy,pandas,matplotlib

ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin

RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-numpy python3-pandas python3-matplotlib ca-certificates; \
    rm -rf /var/lib/apt/lists/*

# 65534 is Debian's nobody/nogroup; it is the sandbox user, no new account needed.
# /work is an empty mount point (a tmpfs replaces it at run time); files arrive
# by `tar -x -C /work`, so /usr/bin/tar must exist even on a non-merged-/usr base.
RUN set -eux; \
    getent passwd 65534 >/dev/null; getent group 65534 >/dev/null; \
    [ -e /usr/bin/tar ] || ln -s /bin/tar /usr/bin/tar; \
    install -d -o 65534 -g 65534 -m 0755 /work; \
    for c in sh bash tar sleep python3; do command -v "$c"; done; \
    python3 --version; \
    python3 -c 'import numpy, pandas, matplotlib'

WORKDIR /work
