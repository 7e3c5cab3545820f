# The registry API. Installs exactly what CI tested: the CPU build of torch first (so pip does not pull
# the CUDA wheels), then the package under requirements.lock as constraints.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    LOCUS_HOST=0.0.0.0 \
    LOCUS_PORT=8000 \
    LOCUS_QUERY_CACHE_DIR=/data/query-cache

WORKDIR /app
RUN pip install "pip==26.3" \
 && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Dependencies first (cached layer), then the code.
COPY pyproject.toml README.md requirements.lock ./
COPY encoder ./encoder
COPY registry ./registry
COPY api ./api
COPY locus_registry_client ./locus_registry_client
COPY migrations ./migrations
RUN pip install -c requirements.lock -e . && useradd --create-home --uid 1000 locus && mkdir -p /data && chown locus /data

USER locus
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
# Compose runs `locus-registry db upgrade` once in its `migrate` service; alone, the image does it here.
CMD ["sh", "-c", "locus-registry db upgrade && exec locus-registry serve"]
