"""regenwatch: find unsubstantiated regenerative-medicine marketing for human review.

The code lives in the repository's top-level folders, installed as
sub-packages: ``regenwatch.pipelines`` (Beam), ``regenwatch.models`` (text
normalization, classifier, artifact format), ``regenwatch.schemas`` (Avro),
``regenwatch.training`` (labeled data and retraining).
"""
__version__ = "0.1.0"
