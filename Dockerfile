# The one image behind the web, worker and migrate services of compose.yaml.
FROM python:3.11-slim

WORKDIR /srv/switchboard
COPY pyproject.toml README.md piccolo_conf.py ./
COPY app ./app
COPY realtime ./realtime
COPY workers ./workers
COPY templates ./templates
COPY piccolo_migrations ./piccolo_migrations
RUN pip install --no-cache-dir -e . && useradd --system switchboard
USER switchboard

ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
CMD ["crm", "serve"]
