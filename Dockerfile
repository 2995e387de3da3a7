# One image for every Ferry process; the command picks the process:
#   ferry-broker --data-dir /var/lib/ferry              (listens on 7070)
#   ferry-operator
#   ferry-streamer / ferry-collector / ferry-api   (telemetry pipeline)
#   ferry ...                                      (CLI)
# Build: docker build -t ferry:dev .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: a virtualenv holding Ferry and its runtime dependencies only
# (no dev extra), compiled to bytecode so nothing is written at run time.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/ferry
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY broker/ broker/
COPY operator/ operator/
COPY telemetry/ telemetry/
COPY kit/ kit/
RUN /opt/ferry/bin/pip install --no-cache-dir . \
    && /opt/ferry/bin/python -m compileall -q /opt/ferry

# Runtime stage: the slim base plus the virtualenv, nothing else.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Ferry: a Kubernetes-native message queue (broker, operator, telemetry pipeline)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric UID so `runAsNonRoot` can verify it without /etc/passwd lookups, in group 0
# with group-writable data: a platform that runs the pod as an arbitrary UID of its own
# (OpenShift restricted-v2) keeps GID 0, so the process can still write there.
RUN useradd --system --uid 10001 --gid 0 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin ferry \
    && mkdir -p /var/lib/ferry \
    && chown 10001:0 /var/lib/ferry \
    && chmod 0775 /var/lib/ferry
COPY --from=build /opt/ferry /opt/ferry
# The sample DCGM CSV, so examples/telemetrypipeline.yaml runs with no data of your own.
COPY examples/data/dcgm_sample.csv /usr/share/ferry/examples/
# Read-only root filesystem: no bytecode writes, unbuffered logs, and the only
# writable paths are volumes (/var/lib/ferry for data, /tmp for scratch).
ENV PATH=/opt/ferry/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /var/lib/ferry
VOLUME ["/var/lib/ferry", "/tmp"]
USER 10001:0
EXPOSE 7070
CMD ["ferry", "--help"]
