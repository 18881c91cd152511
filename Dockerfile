# The musrenbang application image: the API and the worker run from it (see docker-compose.yml).
FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9 && useradd --create-home --uid 10001 musrenbang
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY musrenbang ./musrenbang
COPY migrations ./migrations
COPY alembic.ini ./
RUN uv sync --frozen --no-dev
USER musrenbang
ENV MUSRENBANG_ENVIRONMENT=production MUSRENBANG_LOG_FORMAT=json MUSRENBANG_API_HOST=0.0.0.0
ENTRYPOINT ["musrenbang"]
CMD ["api"]
