"""regenwatch: moderation pipeline for unsubstantiated regenerative-medicine marketing.

The repository keeps the design card's top-level folders (pipelines/, models/,
schemas/, training/); they are installed as sub-packages of ``regenwatch`` so
that generic names such as ``models`` never collide with other distributions
in a worker's site-packages. This file is also what remote runners stage with
``--setup_file``, so everything a worker needs (schemas, the default model) is
package data here.
"""
from setuptools import setup

# The shipped model was trained with this exact scikit-learn; a different
# version may unpickle into a silently different estimator, so it is pinned
# and models/artifact.py refuses a mismatch at load time as well.
SKLEARN_VERSION = "1.9.1"

setup(
    name="regenwatch",
    version="0.1.0",
    description="Find unsubstantiated regenerative-medicine marketing and queue it for human review.",
    python_requires=">=3.10",
    packages=[
        "regenwatch",
        "regenwatch.web",
        "regenwatch.pipelines",
        "regenwatch.models",
        "regenwatch.schemas",
        "regenwatch.training",
    ],
    package_dir={
        "regenwatch": "regenwatch",
        "regenwatch.pipelines": "pipelines",
        "regenwatch.models": "models",
        "regenwatch.schemas": "schemas",
        "regenwatch.training": "training",
    },
    package_data={
        "regenwatch.models": ["default/*.joblib", "default/*.json"],
        "regenwatch.schemas": ["*.avsc"],
        "regenwatch.web": ["templates/*.html", "static/*"],
        "regenwatch.training": ["data/*.jsonl", "data/*.md", "data/real/*.jsonl", "data/authored/*.jsonl",
                                "heldout/*.jsonl", "heldout/real/*.jsonl", "heldout/dev/*.jsonl", "POLICY.md",
                                "annotation/*.jsonl"],
    },
    install_requires=[
        "apache-beam==2.77.0",
        f"scikit-learn=={SKLEARN_VERSION}",
        "joblib>=1.3",
        "fastavro>=1.9",
        "numpy>=1.24",
        # The model limits scikit-learn's OpenMP threads while scoring (models/classifier.py
        # _one_openmp_thread); a scikit-learn dependency, named because it is imported.
        "threadpoolctl>=3.1",
        # Lexbor-based HTML parser: tolerant of broken markup, fast, no recursion
        # limits of its own; a hand-written HTML stripper gets script/nav wrong.
        "selectolax>=1.0",
        # WARC is a fiddly format (chunked/gzip members, HTTP headers inside
        # records); warcio is the reader Common Crawl and Webrecorder maintain.
        "warcio>=1.7",
        # MinHash signatures for near-duplicate clustering of a run's pages
        # (pipelines/clustering.py): maintained, numpy-vectorized, seeded.
        "datasketch>=2.0,<3",
        # PR-curve and calibration PNGs of the training/evaluation report and
        # the review report; a hard dependency because an optional import
        # would fail a training run late or silently drop the pictures.
        "matplotlib>=3.7",
        # The browser review workspace (regenwatch review --serve): Flask 3
        # with Jinja2 autoescaping for the pages, waitress (a maintained
        # pure-Python WSGI server) to serve them; no hand-written HTTP.
        "flask>=3.1,<4",  # 3.1: TRUSTED_HOSTS (Host header check)
        "waitress>=3",
    ],
    extras_require={
        # wheel: tests/pipelines/test_portable.py's worker boot builds the
        # staged --setup_file sdist offline (setuptools needs it for bdist_wheel).
        # selenium: the review workspace's browser tests drive Debian's chromium
        # through /usr/bin/chromedriver (set explicitly: selenium-manager never
        # downloads a driver or a browser).
        "test": ["pytest>=8", "hypothesis>=6.100", "avro>=1.11", "wheel>=0.40", "selenium>=4.15"],
        # Dataflow: gs:// paths and Pub/Sub (regenwatch stream --input_subscription).
        # Same Beam version as install_requires, with Google Cloud I/O.
        "gcp": ["apache-beam[gcp]==2.77.0"],
    },
    entry_points={"console_scripts": ["regenwatch=regenwatch.cli:main"]},
)
