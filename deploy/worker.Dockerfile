# SDK worker image for an EXTERNAL worker pool (Flink or Spark job servers,
# or any runner given --environment_type EXTERNAL --environment_config HOST:50000).
# It holds the dependencies only; each job's regenwatch comes from the job's
# staged --setup_file sdist, installed per worker by deploy/worker_boot.py.
# Build from the repository root: docker build -f deploy/worker.Dockerfile -t regenwatch-worker .
FROM python:3.11-slim
WORKDIR /opt/regenwatch
COPY setup.py pyproject.toml README.md ./
COPY regenwatch regenwatch
COPY pipelines pipelines
COPY models models
COPY schemas schemas
COPY training training
COPY deploy deploy
# Install with dependencies, then drop the package itself: what runs is what
# the job staged. wheel: the boot builds the staged sdist without an index.
RUN pip install --no-cache-dir '.[gcp]' wheel && pip uninstall -y regenwatch
EXPOSE 50000
ENTRYPOINT ["python", "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port=50000", \
            "--container_executable=/opt/regenwatch/deploy/worker_boot.py"]
