# Local stand-in for python:3.11-slim, for machines that cannot reach an image registry (docker/smoke.sh).
# Debian bookworm's own python3.11 + venv on a debootstrap minbase root that already carries the host's
# CA bundle (pip inside the build goes through the host network and needs it). Never used in production:
# docker/Dockerfile still says FROM python:3.11-slim and only gets this through --build-arg PYTHON_IMAGE.
ARG BASE=faceverify-standin/debian:bookworm
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
ENV LANG=C.UTF-8 \
    PIP_CERT=/etc/faceverify-standin/host-ca-bundle.pem \
    SSL_CERT_FILE=/etc/faceverify-standin/host-ca-bundle.pem
CMD ["python3"]
