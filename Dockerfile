# The leadstream worker. Build: docker build -t leadstream:0.1.0 .
# The base image by tag and by digest (the multi-platform index of python:3.11.15-slim-bookworm):
# a rebuild gets the same bytes, or fails. To move on, pin the new tag's digest
# (`docker buildx imagetools inspect python:3.11-slim-bookworm`).
FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3
WORKDIR /app
# Every Python package from the hash lock (requirements/runtime.txt, the build backend
# included), in a layer of its own; then leadstream itself, resolving nothing.
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy ./deploy
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
# Not root: the same uid the Kubernetes manifests run it as (deploy/kubernetes). /data is
# made here, owned by that user, so that a new volume mounted on it inherits the owner.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data leadstream \
    && mkdir /data && chown leadstream:leadstream /data
USER 10001
# The API listens on every interface of the container (publish it with care); every route
# that touches tenant data needs a key of that tenant (leadstream keys create).
ENV LEADSTREAM_DATA_DIR=/data \
    LEADSTREAM_WEB_HOST=0.0.0.0
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["leadstream"]
CMD ["worker"]
