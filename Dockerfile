# One image for every service of docker-compose.yml (and the user-code deployment of the
# Dagster Helm chart): the code location's gRPC server, dagster-webserver,
# dagster-daemon, the CI webhook receiver and `dora-pipeline migrate`.
# No secret is baked in: every credential arrives through the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DORA_HOME=/opt/dagster/dora_home

WORKDIR /opt/dora

# The dependencies first (pinned in pyproject.toml, Dagster libraries in lockstep), so a
# code change does not reinstall them. Installed editable: the SQL models are read from
# /opt/dora/sql_models next to the package.
COPY pyproject.toml README.md ./
COPY dora_pipeline ./dora_pipeline
COPY sql_models ./sql_models
# EXTRAS=k8s adds dagster-k8s (same release train) for the Helm chart's K8sRunLauncher.
ARG EXTRAS=""
RUN pip install -e ".${EXTRAS:+[$EXTRAS]}" \
    && useradd --create-home --uid 10001 dora \
    && mkdir -p "$DAGSTER_HOME" "$DORA_HOME" /opt/dagster/logs \
    && chown -R dora "$DAGSTER_HOME" "$DORA_HOME" /opt/dagster/logs

# The production instance (Postgres storage from DAGSTER_PG_*, queued runs) and the
# workspace the webserver and the daemon load (the code-server service over gRPC).
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml

USER dora
EXPOSE 3000 4000 8088

# Each compose service sets its own command; by default, the code location.
CMD ["dagster", "code-server", "start", "-m", "dora_pipeline.defs.definitions", "-h", "0.0.0.0", "-p", "4000"]
