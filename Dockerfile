# The leadstream worker. Build: docker build -t leadstream .
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy ./deploy
RUN pip install --no-cache-dir .
ENV LEADSTREAM_DATA_DIR=/data \
    LEADSTREAM_WEB_HOST=0.0.0.0
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["leadstream"]
CMD ["worker"]
