# syntax=docker/dockerfile:1
# pvsignal: the API (`pvsignal serve`), the Kafka consumer (`pvsignal consume`) and the
# store migration (`pvsignal store migrate`) in one image. Build: docker build -t pvsignal .

# -- builder: wheels for pvsignal and every dependency (compilers stay here) ---------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pvsignal/ pvsignal/
COPY detectors/ detectors/
COPY streams/ streams/
COPY api/ api/
RUN pip wheel --wheel-dir /wheels .

# -- runtime: slim Python, the wheels, a non-root user, no build tools ----------------------
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/pvsignal-*.whl \
    && groupadd --gid 10001 pvsignal \
    && useradd --uid 10001 --gid pvsignal --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pvsignal \
    && mkdir -p /data \
    && chown pvsignal:pvsignal /data
WORKDIR /data
USER 10001:10001
EXPOSE 8000 9108
ENTRYPOINT ["pvsignal"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
