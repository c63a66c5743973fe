# syntax=docker/dockerfile:1
# The platform image: one image for the operator and every workload (the command picks the role).
# Multi-stage: dependencies are resolved in a builder with compilers; the runtime stage carries only the
# virtualenv and the source, runs as a non-root user, and works with a read-only root filesystem.
# EXTRAS selects what goes in: the operator image needs only "operator"; workloads need "workloads".

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG EXTRAS=operator,workloads
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached while only the source changes).
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY tradeplane/__init__.py tradeplane/py.typed tradeplane/
COPY engine/__init__.py engine/
COPY workloads/__init__.py workloads/
COPY operator/__init__.py operator/
COPY rl/__init__.py rl/
RUN pip install -c constraints.txt ".[${EXTRAS}]"
# Then the source, installed without touching the dependencies.
COPY tradeplane/ tradeplane/
COPY engine/ engine/
COPY workloads/ workloads/
COPY operator/ operator/
COPY rl/ rl/
COPY sql/ sql/
COPY crds/ crds/
RUN pip install --no-deps .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --gid 10001 tradeplane && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tradeplane
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/sql /opt/tradeplane/sql
COPY --from=builder /src/crds /opt/tradeplane/crds
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 TRADEPLANE_HOME=/tmp/tradeplane NUMBA_CACHE_DIR=/tmp/numba
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["tradeplane"]
CMD ["--help"]
