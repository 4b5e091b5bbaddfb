# A minimal cachesync node image for docker-compose.yml (used until helper/Dockerfile exists):
# buildah, skopeo and cachesync in a venv. Build context: the repository root, after
# registry-config/build-images.sh has put cachesync and its dependencies in build/wheels.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      buildah skopeo python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY build/wheels /wheels
RUN python3 -m venv /opt/cachesync \
 && /opt/cachesync/bin/pip install -q --no-cache-dir --no-index --find-links /wheels cachesync \
 && rm -rf /wheels \
 && ln -s /opt/cachesync/bin/cachesync /usr/local/bin/cachesync
ENV CACHESYNC_ROOT=/var/lib/cachesync
VOLUME /var/lib/cachesync
ENTRYPOINT ["cachesync"]
CMD ["sync"]
