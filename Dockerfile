# Handoff: `handoff run` as a non-root user. Settings come from the environment
# (see README "Configuration"); PostgreSQL via DATABASE_URL=postgresql://...
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 handoff
WORKDIR /app

# Only what `pip install .` needs: the package sources and its metadata.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY store ./store
RUN pip install '.[postgres]' && rm -rf /app/build

# The example definition; mount your own over it (or set HANDOFF_DEFINITION).
COPY qualification.yml /app/qualification.yml

USER handoff
WORKDIR /home/handoff
ENV HANDOFF_DEFINITION=/app/qualification.yml \
    DATABASE_URL=sqlite:////home/handoff/handoff.db \
    PORT=3000
EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

CMD ["handoff", "run"]
