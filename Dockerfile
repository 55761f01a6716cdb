FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ENVIRONMENT=production DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY flamehaven ./flamehaven
COPY stores ./stores
COPY search ./search
COPY monitoring ./monitoring
COPY accounts ./accounts
COPY templates ./templates
COPY deploy ./deploy
COPY manage.py ./
RUN pip install --no-cache-dir . \
    && SECRET_KEY=build-only-secret-key-not-used-at-runtime-000 ALLOWED_HOSTS=build \
       python manage.py collectstatic --noinput
RUN useradd --create-home app && mkdir -p /data && chown app /data
USER app
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["sh", "-c", "python manage.py migrate --noinput && gunicorn -c deploy/gunicorn.conf.py"]
