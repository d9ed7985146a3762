"""Near-duplicate clustering of the pages of a run (MinHash + LSH banding).

Scraped clinic pages are often one template repeated across towns
("exosome therapy near <town>"). Grouping them lets a reviewer decide once
per template. Every flagged record gets ``cluster_id`` and ``cluster_size``;
the cluster is computed over all pages of the run that were normalized (so
``cluster_size`` says how many pages of the run carry that template, flagged
or not), and exact duplicates always fall in the same cluster.

How, in the four layers of this package:

* pure functions: word shingles of the normalized text, a MinHash signature
  (``datasketch``), the page's compact *sketch row*, LSH banding and
  verification over all rows at once (:func:`build_cluster_table`), and the
  :class:`ClusterTable` that answers "which cluster is this page in";
* DoFns and a CombineFn: :class:`SketchRowFn` (one page -> its 136-byte
  row), :class:`ClusterTableCombineFn` (rows -> one table per window, in
  memory; the batch job stages rows to files instead),
  :class:`AttachClusterFn` (a flagged record + the table as a side input);
* composites: :class:`ComputeClusters` (normalized pages -> cluster table)
  and :class:`ClusterNearDuplicates` (``(normalized pages, flagged records)
  -> flagged records with cluster fields``).

Memory is the design constraint: clustering is global to a run, so its
state grows with the number of pages. It is one 136-byte row per page (an
8-byte member digest and 128 one-byte MinHash values), where shuffling band
keys and sketches per band as Python objects cost ~60 KB per page. The batch
job writes the rows to files as pages are normalized
(pipelines/rowfiles.py) and builds the table reading back the digest column
and four band columns at a time, fetching whole rows only for the buckets it
verifies: a few bytes per page in memory. Streaming windows combine their
rows in a ``bytearray``. The table that comes out holds numpy arrays for
the pages that have a near duplicate only. The flagged records themselves
never wait in memory for the table in the batch job: they are staged to
Avro and re-read (see ``transforms.WriteClusteredFlagged``).

The cluster fields only decorate flagged records: no record is added or
removed here, so pages in = decisions + dead letters still holds.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from regenwatch.pipelines.dofns import NAMESPACE
from regenwatch.pipelines.rowfiles import RowBufferCombineFn, RowFiles, StageRows, row_source

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
DIGEST_BYTES = 8
ROW_BYTES = DIGEST_BYTES + NUM_PERM
# Two different MinHash values agree on their low byte by chance 1 time in
# 256: the share of equal bytes overestimates Jaccard by (1 - J) / 256,
# which estimated_similarity removes.
_CHANCE = 1.0 / 256

_WORDS = re.compile(r"\w+")


# --------------------------------------------------------------------------
# Pure functions


def member_key(page_id: str, content_sha256: str) -> str:
    """What identifies one page of a run in the clustering: a page seen twice is one member."""
    return f"{content_sha256}:{page_id}"


def member_digest(page_id: str, content_sha256: str) -> bytes:
    """8 bytes of SHA-256 of the member key (a chance collision among 10**6 pages: ~3e-8)."""
    return hashlib.sha256(member_key(page_id, content_sha256).encode("utf-8")).digest()[:DIGEST_BYTES]


def cluster_id_for(digests) -> str:
    """Stable id of a cluster: derived from its smallest member digest.

    A page alone is its own cluster with the id it would have as the
    smallest member, so ids mean the same in every record of a run.
    """
    return "c" + hashlib.sha256(b"cluster:" + min(bytes(d) for d in digests)).hexdigest()[:16]


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


def sketch(signature: np.ndarray) -> bytes:
    """The low byte of each MinHash value: 128 bytes that both band and verify.

    A band of 4 one-byte values is a 32-bit bucket key: two unrelated pages
    share it by chance 1 time in 4 billion. The verification corrects for the
    1-in-256 chance agreement of single bytes.
    """
    return (np.asarray(signature, dtype=np.uint32) & 0xFF).astype(np.uint8).tobytes()


def estimated_similarity(sketch_a: bytes, sketch_b: bytes) -> float:
    """Jaccard similarity estimated from two sketches (share of equal bytes, chance removed)."""
    a = np.frombuffer(sketch_a, dtype=np.uint8)
    b = np.frombuffer(sketch_b, dtype=np.uint8)
    if a.shape != b.shape or not len(a):
        raise ValueError("sketches of different lengths cannot be compared")
    return max(0.0, (float(np.mean(a == b)) - _CHANCE) / (1.0 - _CHANCE))


def sketch_row(page_id: str, content_sha256: str, text: str) -> Optional[bytes]:
    """The page's 136-byte row (member digest + sketch), or None for a text without a word.

    An empty MinHash would make all word-less pages identical: such a page
    gets no row and stays a cluster of one.
    """
    if not _WORDS.search(text):
        return None
    return member_digest(page_id, content_sha256) + sketch(minhash_signature(text))


class _UnionFind:
    """Disjoint sets over row indices; the smaller index is the root (order-independent result).

    Only indices that were ever linked are stored: a page without a near
    duplicate costs nothing here.
    """

    def __init__(self):
        self.parent: Dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        while parent.get(x, x) != x:
            grand = parent.get(parent[x], parent[x])
            parent[x] = grand
            x = grand
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra
            self.parent.setdefault(ra, ra)


class ClusterTable:
    """Which cluster each page of a run is in; only pages with a near duplicate are stored.

    ``digests`` (sorted uint64 view of member digests) -> index into
    ``cluster_ids`` / ``cluster_sizes``. Everything else is a cluster of one.
    """

    def __init__(self, digests: np.ndarray, cluster_index: np.ndarray, cluster_ids: List[str],
                 cluster_sizes: np.ndarray, pages: int, capped: int = 0):
        self.digests = digests
        self.cluster_index = cluster_index
        self.cluster_ids = cluster_ids
        self.cluster_sizes = cluster_sizes
        self.pages = pages
        self.capped = capped

    @classmethod
    def empty(cls) -> "ClusterTable":
        return cls(np.zeros(0, dtype=">u8"), np.zeros(0, dtype=np.uint32), [], np.zeros(0, dtype=np.uint32), 0)

    def lookup(self, page_id: str, content_sha256: str) -> Tuple[str, int]:
        digest = member_digest(page_id, content_sha256)
        key = np.frombuffer(digest, dtype=">u8")[0]
        i = int(np.searchsorted(self.digests, key))
        if i < len(self.digests) and self.digests[i] == key:
            c = int(self.cluster_index[i])
            return self.cluster_ids[c], int(self.cluster_sizes[c])
        return cluster_id_for([digest]), 1

    def __len__(self) -> int:
        return len(self.cluster_ids)

    def members(self):
        """(member digest, cluster id, cluster size) of every page that has a near duplicate."""
        for digest, c in zip(self.digests, self.cluster_index):
            yield np.asarray(digest, dtype=">u8").tobytes(), self.cluster_ids[int(c)], int(self.cluster_sizes[int(c)])


# Band columns read per pass over the rows, and whole rows fetched per batch
# of buckets: together they bound the transient memory of building the table
# to ~8 MB per million pages plus 2 MB (a single bucket bigger than the batch
# is fetched whole: that is the data).
BANDS_PER_PASS = 4
FETCH_ROWS = 16384


def build_cluster_table(rows, similarity: float = DEFAULT_SIMILARITY,
                        max_representatives: int = MAX_BUCKET_REPRESENTATIVES) -> ClusterTable:
    """Cluster all rows of a run: LSH band buckets -> verified edges -> connected components.

    ``rows`` is the rows' bytes or a :class:`~regenwatch.pipelines.rowfiles.RowSource`
    (:class:`~regenwatch.pipelines.rowfiles.RowFiles` for rows staged to
    files): only the digest column and a few band columns at a time are in
    memory, plus the whole rows of the buckets being verified.

    Each band's 4-byte keys are sorted with numpy, so a bucket is a run of
    equal keys. Inside a bucket, members (in digest order, so the result does
    not depend on arrival order) are compared with the bucket's
    representatives; a member similar to one is linked to it, otherwise it
    becomes a representative. Representatives are capped, so a bucket costs at
    most ``len(members) * max_representatives`` comparisons; members left out
    by the cap are counted and can still link through another band. Pairs
    already in one component are not compared again.
    """
    source = row_source(rows, ROW_BYTES)
    all_digests = source.column(0, DIGEST_BYTES).view(">u8").ravel()
    # A page seen twice (same id and content) is one member; members in digest order.
    digests, first = np.unique(all_digests, return_index=True)
    del all_digests
    digests = digests.astype(">u8")  # big-endian: tobytes() gives the digest bytes back
    n = len(digests)
    uf = _UnionFind()
    capped = 0
    for b0 in range(0, BANDS, BANDS_PER_PASS):
        b1 = min(BANDS, b0 + BANDS_PER_PASS)
        # (n, b1 - b0) band keys of the members: band b is 4 consecutive sketch bytes.
        keys_block = source.column(DIGEST_BYTES + 4 * b0, DIGEST_BYTES + 4 * b1)[first].view("<u4")
        for b in range(b1 - b0):
            buckets = _buckets(keys_block[:, b])
            capped += _verify_buckets(source, first, buckets, uf, similarity, max_representatives)
        del keys_block
    groups: Dict[int, List[int]] = {}
    for x in list(uf.parent):
        groups.setdefault(uf.find(x), []).append(x)
    members_out: List[int] = []
    index_out: List[int] = []
    ids: List[str] = []
    sizes: List[int] = []
    for root in sorted(groups):
        group = groups[root]
        if len(group) < 2:
            continue
        c = len(ids)
        # root is the group's smallest index, i.e. its smallest digest.
        ids.append(cluster_id_for([digests[root:root + 1].tobytes()]))
        sizes.append(len(group))
        members_out.extend(group)
        index_out.extend([c] * len(group))
    order = np.argsort(np.asarray(members_out, dtype=np.int64), kind="stable")
    member_digests = digests[np.asarray(members_out, dtype=np.int64)][order] if members_out else np.zeros(0, ">u8")
    return ClusterTable(
        digests=np.ascontiguousarray(member_digests, dtype=">u8"),
        cluster_index=np.asarray(index_out, dtype=np.uint32)[order] if index_out else np.zeros(0, np.uint32),
        cluster_ids=ids,
        cluster_sizes=np.asarray(sizes, dtype=np.uint32),
        pages=n,
        capped=capped,
    )


def _buckets(keys: np.ndarray) -> List[np.ndarray]:
    """Member indices (sorted) of each bucket of equal keys that has more than one member."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate(([0], bounds)).astype(np.int64)
    ends = np.concatenate((bounds, [len(keys)])).astype(np.int64)
    multi = (ends - starts) > 1
    return [np.sort(order[s:e]) for s, e in zip(starts[multi], ends[multi])]


def _verify_buckets(source, first: np.ndarray, buckets: List[np.ndarray], uf: _UnionFind,
                    similarity: float, max_representatives: int) -> int:
    """Link the similar members of each bucket; returns how many members the representative cap left out.

    Whole rows are fetched for a batch of buckets at a time (about
    FETCH_ROWS rows), in the order the buckets come.
    """
    capped = 0
    i = 0
    while i < len(buckets):
        j, size = i, 0
        while j < len(buckets) and (j == i or size + len(buckets[j]) <= FETCH_ROWS):
            size += len(buckets[j])
            j += 1
        needed = np.unique(np.concatenate(buckets[i:j]))
        sketches = source.rows_at(first[needed])[:, DIGEST_BYTES:]
        for members in buckets[i:j]:
            local = np.searchsorted(needed, members)
            reps: List[Tuple[int, int]] = []  # (member index, row in ``sketches``)
            for m, row in zip(members.tolist(), local.tolist()):
                root = uf.find(m)
                for r, r_row in reps:
                    if uf.find(r) == root:
                        break
                    if estimated_similarity(sketches[row], sketches[r_row]) >= similarity:
                        uf.union(r, m)
                        break
                else:
                    if len(reps) < max_representatives:
                        reps.append((m, row))
                    else:
                        capped += 1
        i = j
    return capped


def with_cluster(record: dict, table: Optional[ClusterTable]) -> dict:
    """A flagged record with cluster fields; no table (or no entry) means a cluster of one."""
    table = table if table is not None else ClusterTable.empty()
    cluster_id, size = table.lookup(record["id"], record["content_sha256"])
    return {**record, "cluster_id": cluster_id, "cluster_size": size}


# --------------------------------------------------------------------------
# DoFns and CombineFn


class SketchRowFn(beam.DoFn):
    """(Page, NormalizedPage) -> the page's 136-byte row (none for a page without words)."""

    def __init__(self):
        self.pages = Metrics.counter(NAMESPACE, "cluster_pages_signed")
        self.unsigned = Metrics.counter(NAMESPACE, "cluster_pages_not_signed")

    def process(self, element):
        page, normalized = element
        try:
            row = sketch_row(page.id, page.content_sha256(), normalized.text)
        except Exception:  # pylint: disable=broad-except
            # Per-record isolation: the page is decided (or dead-lettered) by
            # the scoring path; a page that cannot be sketched stays a cluster
            # of one rather than failing the run.
            self.unsigned.inc()
            return
        if row is not None:
            self.pages.inc()
            yield row


class ClusterTableCombineFn(RowBufferCombineFn):
    """Rows -> ClusterTable. The accumulator is one flat bytearray: 136 bytes per page."""

    def __init__(self, similarity: float = DEFAULT_SIMILARITY):
        self.similarity = similarity

    def extract_output(self, acc):
        return build_cluster_table(acc, self.similarity)


class AttachClusterFn(beam.DoFn):
    """A flagged record + the run's ClusterTable (side input) -> the record with cluster fields."""

    def __init__(self):
        self.near_dup = Metrics.counter(NAMESPACE, "flagged_in_multi_page_cluster")

    def _counted(self, out: dict) -> dict:
        if out["cluster_size"] > 1:
            self.near_dup.inc()
        return out

    def process(self, record, table=None):
        yield self._counted(with_cluster(record, table))


# --------------------------------------------------------------------------
# Composites


def build_cluster_table_from_files(paths: List[str], similarity: float = DEFAULT_SIMILARITY) -> ClusterTable:
    """The cluster table of rows staged to files (see :class:`ComputeClusters` with ``staging``)."""
    with RowFiles(paths, ROW_BYTES) as source:
        return build_cluster_table(source, similarity)


class ComputeClusters(beam.PTransform):
    """(Page, NormalizedPage) pairs -> one ClusterTable per window (none for an empty window).

    In batch (the global window) clusters span the whole run. With
    ``staging`` (a directory; batch only) the rows are written there as they
    are produced and the table is built from the files, so the memory it
    takes stays a few bytes per page whatever the run's size
    (pipelines/rowfiles.py); without it they are combined in memory, which
    is what windows of a stream need.
    """

    def __init__(self, similarity: float = DEFAULT_SIMILARITY, staging: Optional[str] = None):
        super().__init__()
        if not 0.0 < similarity <= 1.0:
            raise ValueError(f"similarity must be within (0, 1], got {similarity}")
        self.similarity = similarity
        self.staging = staging

    def expand(self, normalized):
        rows = normalized | "SketchRows" >> beam.ParDo(SketchRowFn())
        if self.staging:
            return (
                rows
                | "StageRows" >> StageRows(self.staging, "cluster", ROW_BYTES)
                | "ClusterTableFromFiles" >> beam.Map(build_cluster_table_from_files, self.similarity)
            )
        return rows | "ClusterTable" >> beam.CombineGlobally(ClusterTableCombineFn(self.similarity)).without_defaults()


class AttachClusters(beam.PTransform):
    """Flagged records -> the same records with cluster fields from ``tables`` (a side input)."""

    def __init__(self, tables):
        super().__init__()
        self.tables = tables

    def expand(self, flagged):
        return flagged | "Attach" >> beam.ParDo(
            AttachClusterFn(), table=beam.pvalue.AsSingleton(self.tables, default_value=None))


def _table_members(table: ClusterTable):
    for digest, cluster_id, size in table.members():
        yield digest, (cluster_id, size)


def _key_by_member(record: dict):
    return member_digest(record["id"], record["content_sha256"]), record


class AttachJoinedClusterFn(AttachClusterFn):
    """(member digest, {"flagged": records, "cluster": [(id, size)]}) -> the records with cluster fields."""

    def process(self, element):
        digest, joined = element
        clusters = list(joined["cluster"])
        cluster_id, size = clusters[0] if clusters else (cluster_id_for([digest]), 1)
        for record in joined["flagged"]:
            yield self._counted({**record, "cluster_id": cluster_id, "cluster_size": size})


class JoinClusters(beam.PTransform):
    """(flagged records, cluster tables) -> the records with cluster fields, joined by key per window.

    What windows of a stream use: a join holds one window's flagged records
    until its table is there, which every runner supports in streaming (the
    batch job attaches the table as a side input to staged records instead,
    see ``transforms.WriteClusteredFlagged``).
    """

    def expand(self, inputs):
        flagged, tables = inputs
        members = tables | "TableMembers" >> beam.FlatMap(_table_members)
        keyed = flagged | "KeyFlagged" >> beam.Map(_key_by_member)
        return (
            {"flagged": keyed, "cluster": members}
            | "JoinByMember" >> beam.CoGroupByKey()
            | "AttachJoined" >> beam.ParDo(AttachJoinedClusterFn())
        )


class ClusterNearDuplicates(beam.PTransform):
    """(normalized pages, flagged records) -> flagged records with cluster_id, cluster_size.

    ``normalized`` is the ``(Page, NormalizedPage)`` PCollection that
    ModeratePages scores; ``flagged`` its flagged records. Every flagged record
    comes out exactly once, in the window it came in.
    """

    def __init__(self, similarity: float = DEFAULT_SIMILARITY, staging: Optional[str] = None):
        super().__init__()
        self.compute = ComputeClusters(similarity, staging=staging)

    def expand(self, inputs):
        normalized, flagged = inputs
        tables = normalized | "ComputeClusters" >> self.compute
        return (flagged, tables) | "JoinClusters" >> JoinClusters()


__all__ = [
    "AttachClusters",
    "ClusterNearDuplicates",
    "ClusterTable",
    "ComputeClusters",
    "DEFAULT_SIMILARITY",
    "JoinClusters",
    "build_cluster_table",
    "build_cluster_table_from_files",
    "cluster_id_for",
    "estimated_similarity",
    "member_digest",
    "member_key",
    "minhash_signature",
    "shingles",
    "sketch",
    "sketch_row",
    "with_cluster",
]
