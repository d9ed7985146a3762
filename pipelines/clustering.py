"""Near-duplicate clustering of the pages of a run (MinHash + LSH banding).

Scraped clinic pages are often one template repeated across towns
("exosome therapy near <town>"). Grouping them lets a reviewer decide once
per template. Every flagged record gets ``cluster_id`` and ``cluster_size``;
the cluster is computed over all pages of the run that were normalized (so
``cluster_size`` says how many pages of the run carry that template, flagged
or not), and exact duplicates always fall in the same cluster.

How, in the four layers of this package:

* pure functions: word shingles of the normalized text, a MinHash signature
  (``datasketch``), LSH band keys, the similarity check inside a bucket, a
  union-find over the edges and the cluster id;
* DoFns: :class:`SignatureFn` (one page -> its band keys), :class:`BucketEdgesFn`
  (one LSH bucket -> verified edges), :class:`AttachClusterFn` (the join);
* the composite :class:`ClusterNearDuplicates`:
  ``(normalized pages, flagged records) -> flagged records with cluster fields``.

Work is bounded: a page's signature is computed in chunks of shingles, only a
page's band keys and a 256-byte verification sketch are shuffled, a bucket
compares each member with at most ``MAX_BUCKET_REPRESENTATIVES`` others, and
only pages that have a near duplicate reach the single union-find step.

The cluster fields only decorate flagged records: no record is added or
removed here, so pages in = decisions + dead letters still holds.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from regenwatch.pipelines.dofns import NAMESPACE

# --------------------------------------------------------------------------
# Parameters

SHINGLE_WORDS = 3
NUM_PERM = 128
# 32 bands of 4 rows: a pair with Jaccard 0.6 shares at least one band with
# probability 1 - (1 - 0.6**4)**32 = 0.99, one with Jaccard 0.2 with 0.05.
# The LSH step only finds candidates; the verification below decides.
BANDS = 32
ROWS = 4
# Estimated Jaccard similarity of word 3-shingles from which two pages are
# near duplicates. A 300-word template whose town name appears 6 times keeps
# about 0.9; two different pages of the same clinic site stay well under 0.3.
DEFAULT_SIMILARITY = 0.6
MAX_BUCKET_REPRESENTATIVES = 64
# Shingles hashed per update_batch call: bounds the (chunk x NUM_PERM) matrix
# datasketch builds to about 8 MB however long the page is.
SHINGLE_CHUNK = 8192
MINHASH_SEED = 1

_WORDS = re.compile(r"\w+")


# --------------------------------------------------------------------------
# Pure functions


def member_key(page_id: str, content_sha256: str) -> str:
    """What identifies one page of a run in the clustering (and in the join)."""
    return f"{content_sha256}:{page_id}"


def shingles(text: str, k: int = SHINGLE_WORDS) -> List[bytes]:
    """Distinct word k-shingles of case-folded normalized text, in first-seen order.

    A page with fewer than k words is one shingle, so it still has a signature.
    """
    words = _WORDS.findall(text.casefold())
    if len(words) < k:
        return [" ".join(words).encode("utf-8")] if words else []
    seen: Dict[bytes, None] = {}
    for i in range(len(words) - k + 1):
        seen.setdefault(" ".join(words[i:i + k]).encode("utf-8"), None)
    return list(seen)


@lru_cache(maxsize=4)
def _permutations(num_perm: int, seed: int):
    from datasketch import MinHash

    template = MinHash(num_perm=num_perm, seed=seed)
    return template.permutations, template.scheme


def minhash_signature(text: str, num_perm: int = NUM_PERM, k: int = SHINGLE_WORDS) -> np.ndarray:
    """MinHash of the page's word shingles: ``num_perm`` uint32 values."""
    from datasketch import MinHash

    permutations, scheme = _permutations(num_perm, MINHASH_SEED)
    # Sharing the permutations avoids regenerating them for every page.
    mh = MinHash(num_perm=num_perm, seed=MINHASH_SEED, permutations=permutations, scheme=scheme)
    items = shingles(text, k)
    for start in range(0, len(items), SHINGLE_CHUNK):
        mh.update_batch(items[start:start + SHINGLE_CHUNK])
    return np.asarray(mh.hashvalues, dtype=np.uint32)


def band_keys(signature: np.ndarray, bands: int = BANDS, rows: int = ROWS) -> List[bytes]:
    """One LSH bucket key per band: band index + that band's values."""
    if len(signature) < bands * rows:
        raise ValueError(f"signature of {len(signature)} values is shorter than {bands} bands x {rows} rows")
    sig = np.ascontiguousarray(signature, dtype="<u4")
    return [bytes([b]) + sig[b * rows:(b + 1) * rows].tobytes() for b in range(bands)]


def verification_sketch(signature: np.ndarray) -> bytes:
    """The low 16 bits of each MinHash value (256 bytes for 128 values).

    Shuffled with each band key instead of the full signature (a quarter of
    the bytes); a chance 16-bit collision (1 in 65,536 per value) moves the
    similarity estimate by a negligible amount.
    """
    return np.ascontiguousarray(np.asarray(signature, dtype=np.uint32) & 0xFFFF, dtype="<u2").tobytes()


def estimated_similarity(sketch_a: bytes, sketch_b: bytes) -> float:
    """Share of equal MinHash values: an unbiased estimate of the Jaccard similarity."""
    a = np.frombuffer(sketch_a, dtype="<u2")
    b = np.frombuffer(sketch_b, dtype="<u2")
    if a.shape != b.shape or not len(a):
        raise ValueError("sketches of different lengths cannot be compared")
    return float(np.mean(a == b))


def page_bands(key: str, text: str) -> List[Tuple[bytes, Tuple[str, bytes]]]:
    """(band key, (member key, sketch)) for every band of one page.

    A text without a single word has no shingles, and an empty MinHash would
    make all such pages identical: it gets no band and stays a cluster of one.
    """
    if not _WORDS.search(text):
        return []
    signature = minhash_signature(text)
    sketch = verification_sketch(signature)
    return [(band, (key, sketch)) for band in band_keys(signature)]


def bucket_edges(members: Iterable[Tuple[str, bytes]], similarity: float = DEFAULT_SIMILARITY,
                 max_representatives: int = MAX_BUCKET_REPRESENTATIVES) -> Tuple[List[Tuple[str, str]], int]:
    """Verified near-duplicate edges among the members of one LSH bucket.

    Greedy: members (sorted, so the result does not depend on shuffle order)
    are compared with the bucket's representatives so far; a member similar to
    one is linked to it, otherwise it becomes a representative itself. The
    number of representatives is capped, so a bucket costs at most
    ``len(members) * max_representatives`` comparisons; the number of members
    left unlinked by the cap is returned (they can still link through another
    band).
    """
    reps: List[Tuple[str, bytes]] = []
    edges: List[Tuple[str, str]] = []
    capped = 0
    for key, sketch in sorted(set(members)):
        for rep_key, rep_sketch in reps:
            if estimated_similarity(sketch, rep_sketch) >= similarity:
                edges.append((rep_key, key))
                break
        else:
            if len(reps) < max_representatives:
                reps.append((key, sketch))
            else:
                capped += 1
    return edges, capped


class UnionFind:
    """Disjoint sets over string keys (path halving, union by smaller root)."""

    def __init__(self):
        self.parent: Dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller key becomes the root: deterministic whatever the order.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra

    def components(self) -> List[List[str]]:
        groups: Dict[str, List[str]] = {}
        for x in list(self.parent):
            groups.setdefault(self.find(x), []).append(x)
        return sorted(sorted(g) for g in groups.values())


def cluster_id_for(members: Sequence[str]) -> str:
    """Stable id of a cluster: derived from its smallest member key.

    A page alone is its own cluster with the id it would have as the
    smallest member, so ids mean the same in every record of a run.
    """
    return "c" + hashlib.sha256(min(members).encode("utf-8")).hexdigest()[:16]


def cluster_assignments(edges: Iterable[Tuple[str, str]]) -> Dict[str, Tuple[str, int]]:
    """member key -> (cluster id, cluster size) for every member of an edge."""
    uf = UnionFind()
    for a, b in edges:
        uf.union(a, b)
    out: Dict[str, Tuple[str, int]] = {}
    for group in uf.components():
        cid = cluster_id_for(group)
        for member in group:
            out[member] = (cid, len(group))
    return out


def with_cluster(record: dict, assignment: Optional[Tuple[str, int]]) -> dict:
    """A flagged record with cluster fields; no assignment means a cluster of one."""
    if assignment is None:
        assignment = (cluster_id_for([member_key(record["id"], record["content_sha256"])]), 1)
    return {**record, "cluster_id": assignment[0], "cluster_size": int(assignment[1])}


# --------------------------------------------------------------------------
# DoFns and CombineFn


class SignatureFn(beam.DoFn):
    """(Page, NormalizedPage) -> (band key, (member key, sketch)) per LSH band."""

    def __init__(self):
        self.pages = Metrics.counter(NAMESPACE, "cluster_pages_signed")

    def process(self, element):
        page, normalized = element
        self.pages.inc()
        yield from page_bands(member_key(page.id, page.content_sha256()), normalized.text)


class BucketEdgesFn(beam.DoFn):
    """(band key, members) -> verified edges (member key, member key)."""

    def __init__(self, similarity: float):
        self.similarity = similarity
        self.capped = Metrics.counter(NAMESPACE, "cluster_bucket_members_over_cap")

    def process(self, element):
        _, members = element
        members = list(members)
        if len(members) < 2:
            return
        edges, capped = bucket_edges(members, self.similarity)
        if capped:
            self.capped.inc(capped)
        yield from edges


class UnionFindCombineFn(beam.CombineFn):
    """Edges -> {member key: (cluster id, cluster size)} (connected components)."""

    def create_accumulator(self):
        return UnionFind()

    def add_input(self, acc, edge):
        acc.union(*edge)
        return acc

    def merge_accumulators(self, accumulators):
        merged = UnionFind()
        for acc in accumulators:
            for x in list(acc.parent):
                merged.union(x, acc.find(x))
        return merged

    def extract_output(self, acc):
        return cluster_assignments((x, acc.find(x)) for x in list(acc.parent))


class AttachClusterFn(beam.DoFn):
    """(member key, {'flagged': [...], 'cluster': [...]}) -> flagged records with cluster fields."""

    def __init__(self):
        self.near_dup = Metrics.counter(NAMESPACE, "flagged_in_multi_page_cluster")

    def process(self, element):
        _, grouped = element
        assignments = list(grouped["cluster"])
        assignment = assignments[0] if assignments else None
        for record in grouped["flagged"]:
            out = with_cluster(record, assignment)
            if out["cluster_size"] > 1:
                self.near_dup.inc()
            yield out


# --------------------------------------------------------------------------
# The composite


class ClusterNearDuplicates(beam.PTransform):
    """(normalized pages, flagged records) -> flagged records with cluster_id, cluster_size.

    ``normalized`` is the ``(Page, NormalizedPage)`` PCollection that
    ModeratePages scores; ``flagged`` its flagged records. Every flagged record
    comes out exactly once. Grouping is per window: in batch (the global
    window) clusters span the whole run.
    """

    def __init__(self, similarity: float = DEFAULT_SIMILARITY):
        super().__init__()
        if not 0.0 < similarity <= 1.0:
            raise ValueError(f"similarity must be within (0, 1], got {similarity}")
        self.similarity = similarity

    def expand(self, inputs):
        normalized, flagged = inputs
        assignments = (
            normalized
            | "Signatures" >> beam.ParDo(SignatureFn())
            | "GroupBuckets" >> beam.GroupByKey()
            | "VerifyBuckets" >> beam.ParDo(BucketEdgesFn(self.similarity))
            # Only pages with a near duplicate reach this single combine.
            | "ConnectedComponents" >> beam.CombineGlobally(UnionFindCombineFn()).without_defaults()
            | "Assignments" >> beam.FlatMap(lambda mapping: sorted(mapping.items()))
        )
        keyed_flagged = flagged | "KeyFlagged" >> beam.Map(
            lambda r: (member_key(r["id"], r["content_sha256"]), r))
        return (
            {"flagged": keyed_flagged, "cluster": assignments}
            | "JoinClusters" >> beam.CoGroupByKey()
            | "AttachClusters" >> beam.ParDo(AttachClusterFn())
        )


__all__ = [
    "ClusterNearDuplicates",
    "DEFAULT_SIMILARITY",
    "bucket_edges",
    "cluster_assignments",
    "cluster_id_for",
    "estimated_similarity",
    "member_key",
    "minhash_signature",
    "page_bands",
    "shingles",
    "verification_sketch",
    "with_cluster",
]
