"""Two-stage search and duplicate finding over the library.

Stage 1, candidates: the ``k' = max(candidate_factor * k, min_candidates)`` nearest codes by
Hamming distance from the faiss binary index (or every code within a Hamming radius), plus
every file whose 64-bit pHash lies within ``phash_radius`` of the query's (the *hash
channel*: pHash keeps the near-duplicates that short binary codes lose under blur, rescaling
and recompression).

Stage 2, re-rank: cosine similarity of the stored fp16 embeddings to the query embedding.

Tiers (thresholds in :class:`TierThresholds`, tuned for 64-bit pHash):

- ``identical``: byte-identical content (same size + fingerprint), or the same pixel size
  (either orientation) with pHash distance ``<= identical_phash`` (0) and cosine
  ``>= identical_cosine`` (0.995): the same picture re-saved or with edited metadata.
- ``near_duplicate``: pHash distance ``<= near_duplicate_phash`` (10 of 64 bits: resize,
  recompression, mild colour edits), or cosine ``>= near_duplicate_cosine`` (crops,
  borders and rotations, where pHash fails; calibrated per model, 0.95 for models without a
  calibration).
- ``similar``: everything else among the candidates.

A *flat* file or query (blank, one colour, fully transparent: ``core.imageio.is_flat``) is
``identical`` to byte-identical copies only and never ``near_duplicate``: all flat pictures
share about one pHash and one embedding, which say nothing about what they show.

Results are ordered by tier, then pHash-vouched before cosine-only matches, then cosine,
then Hamming distance. Cosines closer than ``SearchConfig.near_tie`` (0.005) do not order
look-alikes reliably (two variants of one wallpaper design score 1.000 and 1.000), so such
near-ties are broken by the smaller pHash distance, then by the aspect ratio nearer the
query's (a rescaled or recompressed copy keeps it). With ``robust=True`` the
query is encoded in the 8 orientations (4 rotations x mirror) and, per file, the best
distance/similarity over orientations is kept.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..imageio import ImageLoadError, is_flat, mirror_phash, phash, to_rgb
from .catalog import Catalog, FileRecord
from .embeddings import EmbeddingStore
from .encoder import ImageEncoder, check_encoder_output
from .index import BinaryIndex
from .scanner import decode_for_index, reduce_for_index

__all__ = [
    "DUPLICATE_LEVELS",
    "TIERS",
    "DuplicateGroup",
    "Query",
    "SearchConfig",
    "SearchHit",
    "TierThresholds",
    "calibrate_near_duplicate_cosine",
    "centre_linkage",
    "duplicate_level",
    "find_duplicates",
    "hamming_matrix",
    "order_hits",
    "phash_codes",
    "prepare_query",
    "run_search",
]

logger = logging.getLogger(__name__)

TIERS = ("identical", "near_duplicate", "similar")
_TIER_RANK = {t: i for i, t in enumerate(TIERS)}
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_ORIENTATIONS: tuple[Image.Transpose | None, ...] = (
    None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.TRANSPOSE, Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSVERSE,
)


@dataclass(frozen=True)
class TierThresholds:
    """Tier boundaries; see the module docstring.

    ``near_duplicate_cosine`` is the fallback for models that carry no calibrated value:
    with ``model_calibrated`` (the default) a model's own ``near_duplicate_cosine`` (see
    :func:`calibrate_near_duplicate_cosine`) replaces it, since how close two different
    photos of one subject come depends on the model.
    """

    identical_phash: int = 0
    identical_cosine: float = 0.995
    near_duplicate_phash: int = 10
    near_duplicate_cosine: float = 0.95
    model_calibrated: bool = True

    def with_model_cosine(self, value: float | None) -> TierThresholds:
        """These thresholds with a model's calibrated near-duplicate cosine, if any."""
        if not self.model_calibrated or value is None:
            return self
        return replace(self, near_duplicate_cosine=float(value))


#: How alike two files must be to share a duplicate group (``Library.duplicates(level=)``):
#: ``strict``: the same picture by pHash (resized, recompressed, recoloured, mirrored);
#: ``normal``: also crops and other edits by the model's calibrated cosine;
#: ``loose``: also look-alikes, cosine >= ``LOOSE_COSINE`` (different shots of one scene).
DUPLICATE_LEVELS = ("strict", "normal", "loose")
LOOSE_COSINE = 0.95


def duplicate_level(thresholds: TierThresholds, level: str) -> TierThresholds:
    """``thresholds`` adjusted to a :data:`DUPLICATE_LEVELS` level."""
    if level == "strict":
        return replace(thresholds, near_duplicate_cosine=math.inf)
    if level == "loose":
        return replace(thresholds, near_duplicate_cosine=min(
            thresholds.near_duplicate_cosine, LOOSE_COSINE))
    if level != "normal":
        raise ValueError(f"level must be one of {DUPLICATE_LEVELS}, not {level!r}")
    return thresholds


#: Share of distinct photos allowed a cosine-only "near-duplicate" among the calibration set.
CALIBRATION_FALSE_RATE = 0.01


def calibrate_near_duplicate_cosine(
    embeddings: np.ndarray, *, false_rate: float = CALIBRATION_FALSE_RATE,
    floor: float = 0.95, cap: float = 0.99, max_images: int = 10_000, chunk: int = 1024,
) -> float:
    """The cosine above which two embeddings count as near-duplicates, for one model.

    Calibrated on a set of (mostly) different photos, such as the images a hash head was
    fitted on: the ``1 - false_rate`` quantile of each photo's nearest-neighbour cosine, so
    that about ``false_rate`` of distinct photos would get a false near-duplicate, clipped
    to ``[floor, cap]``. Semantic embeddings put different photos of one subject close
    together (with the default model 10 % of Imagenette val photos have a neighbour above
    0.95), so a fixed threshold flags them as duplicates.

    Args:
        embeddings: float ``[N, E]`` L2-normalised embeddings (at most ``max_images``,
            evenly spread, are used: a set listed folder by folder stays balanced).
    """
    e = np.asarray(embeddings, dtype=np.float32)
    if len(e) > max_images:
        e = e[np.linspace(0, len(e) - 1, max_images).round().astype(np.int64)]
    if len(e) < 2:
        return floor
    top = np.empty(len(e), dtype=np.float32)
    for s in range(0, len(e), chunk):
        sim = e[s:s + chunk] @ e.T
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf
        top[s:s + len(sim)] = sim.max(axis=1)
    return min(max(float(np.quantile(top, 1.0 - false_rate)), floor), cap)


@dataclass(frozen=True)
class SearchConfig:
    """Search settings.

    Attributes:
        candidate_factor: stage-1 candidates per requested result.
        min_candidates: at least this many stage-1 candidates.
        phash_radius: hash-channel candidate radius (bits of 64); 0 disables the channel.
        mirror_phash_radius: files within this pHash distance of the *mirrored* query join
            the hash channel (mirrored copies, which pHash and a flip-tolerant embedding
            miss). Stricter than ``phash_radius``: a second hash doubles the chance that an
            unrelated photo matches, and a mirrored copy lands within a few bits.
        thresholds: tier boundaries.
        near_tie: cosines closer than this are near-ties, ordered by pHash distance, then
            by aspect ratio (see the module docstring); 0 orders by cosine alone.
    """

    candidate_factor: int = 10
    min_candidates: int = 100
    phash_radius: int = 10
    mirror_phash_radius: int = 4
    thresholds: TierThresholds = TierThresholds()
    near_tie: float = 0.005


@dataclass(frozen=True)
class SearchHit:
    """One result. ``score`` is cosine similarity; ``hamming`` the code distance in bits;
    ``phash_distance`` the pHash distance (None if unknown); ``mtime`` in seconds."""

    file_id: int
    path: str
    score: float
    hamming: int
    phash_distance: int | None
    tier: str
    size: int
    mtime: float
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Query:
    """An encoded query: one row per orientation.

    Attributes:
        codes: uint8 ``[V, n_bits//8]``.
        embeddings: float32 ``[V, embed_dim]``.
        phashes: pHash per orientation (may be empty).
        exclude_id: catalog id of the query file itself, if indexed.
        fingerprint: content fingerprint of the query file (for the identical tier).
        size: byte size of the query file.
        dims: ``(width, height)`` of the query image at full resolution.
        mirror_phash: pHash of the mirrored query (see ``SearchConfig.mirror_phash_radius``).
        flat: the query picture is blank or one colour (see the module docstring).
    """

    codes: np.ndarray
    embeddings: np.ndarray
    phashes: tuple[int, ...]
    exclude_id: int | None = None
    fingerprint: str | None = None
    size: int | None = None
    dims: tuple[int, int] | None = None
    mirror_phash: int | None = None
    flat: bool = False


@dataclass(frozen=True)
class DuplicateGroup:
    """Files that are copies or near-copies of each other (largest first)."""

    tier: str
    files: tuple[FileRecord, ...]


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between packed codes ``a [n, B]`` and ``b [m, B]`` → int32 ``[n, m]``."""
    x = np.bitwise_xor(a[:, None, :], b[None, :, :])
    return _POPCOUNT[x].sum(axis=2, dtype=np.int32)


def _phash_dist(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()


def phash_codes(values: Sequence[int]) -> np.ndarray:
    """64-bit hashes → packed big-endian uint8 ``[n, 8]`` (bit 63 first, as pHash bits)."""
    return np.asarray([int(v) for v in values], dtype=">u8").view(np.uint8).reshape(-1, 8)


def _encode_images(
    encoder: ImageEncoder, images: list[Image.Image]
) -> tuple[np.ndarray, np.ndarray]:
    codes, emb = encoder.encode(images)
    return check_encoder_output(encoder, len(images), codes, emb)


def prepare_query(
    query: str | os.PathLike[str] | Image.Image | int,
    *, catalog: Catalog, encoder: ImageEncoder, decode_size: int, robust: bool = False,
) -> Query:
    """Encode a query given as a file path, an in-memory image or an indexed file id.

    An indexed, unchanged file reuses its stored code, embedding and pHash (unless
    ``robust``), and is excluded from its own results. A decoded query also carries the pHash
    of its mirror image (``robust`` already has all 8 orientations).

    Raises:
        ImageLoadError: the query file cannot be decoded.
        KeyError: unknown file id.
    """
    model_id = encoder.model_id
    exclude_id = fingerprint = size = None
    dims: tuple[int, int] | None = None
    image: Image.Image | None = None
    hashes: tuple[int | None, int | None] = (None, None)  # (pHash, mirror pHash) if decoded
    flat: bool | None = None  # known from the decode

    def stored_query(rec: FileRecord) -> Query | None:
        stored = catalog.fetch_for_ranking([rec.id], model_id).get(rec.id)
        if robust or not stored or stored[1] is None or stored[2] is None:
            return None
        dims = (rec.width, rec.height) if rec.width and rec.height else None
        return Query(stored[1][None], stored[2][None],
                     (rec.phash,) if rec.phash is not None else (), rec.id, rec.fingerprint,
                     rec.size, dims, rec.mirror_phash, bool(rec.flat))

    if isinstance(query, int | np.integer):
        rec = catalog.get_file(int(query))
        if rec is None:
            raise KeyError(f"no file with id {query}")
        q = stored_query(rec)
        if q is not None:
            return q
        query = rec.path
    if isinstance(query, Image.Image):
        dims = query.size
        image = reduce_for_index(to_rgb(query), decode_size)
    else:
        path = os.path.normpath(os.path.abspath(os.fspath(query)))
        rec = catalog.get_file_by_path(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ImageLoadError(path, "unreadable", str(exc)) from exc
        if rec is not None:
            exclude_id = rec.id
            if rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
                q = stored_query(rec)
                if q is not None:
                    return q
        decoded = decode_for_index(path, decode_size, size=st.st_size)
        if decoded.error is not None:
            raise decoded.error
        image, fingerprint, size = decoded.image, decoded.fingerprint, st.st_size
        dims = (decoded.width, decoded.height) if decoded.width and decoded.height else None
        hashes = (decoded.phash, decoded.mirror_phash)
        flat = decoded.flat
    assert image is not None
    images = [image if t is None else image.transpose(t)
              for t in (_ORIENTATIONS if robust else _ORIENTATIONS[:1])]
    codes, emb = _encode_images(encoder, images)
    if robust:
        phashes, mirror = tuple(phash(im) for im in images), None
    else:  # the decode's hashes, when the query was a file
        phashes = (hashes[0] if hashes[0] is not None else phash(image),)
        mirror = hashes[1] if hashes[1] is not None else mirror_phash(image)
    return Query(codes, emb, phashes, exclude_id, fingerprint, size, dims, mirror,
                 is_flat(image) if flat is None else flat)


def _tier(
    t: TierThresholds, ph_d: int | None, cos: float, same_bytes: bool, same_dims: bool
) -> str:
    if same_bytes or (same_dims and ph_d is not None and ph_d <= t.identical_phash
                      and cos >= t.identical_cosine):
        return "identical"
    if (ph_d is not None and ph_d <= t.near_duplicate_phash) or cos >= t.near_duplicate_cosine:
        return "near_duplicate"
    return "similar"


def _strength(t: TierThresholds, ph_d: int | None) -> int:
    """0 when the pHash channel vouches for a near-duplicate, else 1.

    Within a tier, a pHash match (<= ``near_duplicate_phash`` of 64 bits; unrelated photos
    sit near 32) is stronger evidence of the same picture than a high embedding cosine, which
    a weak model also gives to look-alikes; such hits are ranked first, then by cosine.
    """
    return 0 if ph_d is not None and ph_d <= t.near_duplicate_phash else 1


def _aspect_gap(dims: tuple[int, int] | None, w: int | None, h: int | None) -> float:
    """|log aspect ratio difference| between the query and a file (either orientation)."""
    if dims is None or not w or not h or not dims[0] or not dims[1]:
        return float("inf")
    a = math.log(dims[0] / dims[1])
    b = math.log(w / h)
    return min(abs(a - b), abs(a + b))


def order_hits(hits: list[SearchHit], t: TierThresholds, query_dims: tuple[int, int] | None,
               near_tie: float) -> list[SearchHit]:
    """Final order: tier, pHash-vouched first, cosine; near-ties (cosines within
    ``near_tie`` of the best of their run) by pHash distance, then aspect ratio."""
    hits = sorted(hits, key=lambda h: (_TIER_RANK[h.tier], _strength(t, h.phash_distance),
                                       -h.score, h.hamming, h.file_id))
    if near_tie <= 0:
        return hits
    out: list[SearchHit] = []
    i = 0
    while i < len(hits):
        head = hits[i]
        j = i + 1
        while (j < len(hits) and hits[j].tier == head.tier
               and _strength(t, hits[j].phash_distance) == _strength(t, head.phash_distance)
               and head.score - hits[j].score < near_tie):
            j += 1
        out += sorted(hits[i:j], key=lambda h: (
            64 if h.phash_distance is None else h.phash_distance,
            round(_aspect_gap(query_dims, h.width, h.height), 3), -h.score, h.hamming,
            h.file_id))
        i = j
    return out


def run_search(
    query: Query, *, catalog: Catalog, model_id: str, code_index: BinaryIndex,
    phash_index: BinaryIndex | None, k: int = 20, radius: int | None = None,
    config: SearchConfig = SearchConfig(), embeddings: EmbeddingStore | None = None,
) -> list[SearchHit]:
    """Stage 1 candidates + stage 2 re-rank + tiers (see the module docstring).

    Args:
        query: from :func:`prepare_query`.
        k: results wanted (a cap on results for radius queries).
        radius: if given, code candidates are all files within this Hamming distance
            (hash-channel near-duplicates are kept even beyond it).
        embeddings: the model's embedding store (positional reads); without it (or once
            it is closed by a model swap) the embeddings come from the catalog.
    """
    kprime = max(config.candidate_factor * k, config.min_candidates)
    ham: dict[int, int] = {}  # best code distance over query orientations
    if radius is None:
        dist, ids = code_index.search(query.codes, kprime)
        pairs = zip(ids.ravel().tolist(), dist.ravel().tolist(), strict=True)
    else:
        found = code_index.range_search(query.codes, radius)
        pairs = ((i, d) for dq, iq in found for i, d in zip(iq.tolist(), dq.tolist(),
                                                           strict=True))
    for i, d in pairs:
        if i >= 0 and d < ham.get(i, 1 << 30):
            ham[i] = d
    ph: dict[int, int] = {}  # best pHash distance, for files within phash_radius
    if phash_index is not None and config.phash_radius > 0 and query.phashes:
        for dq, iq in phash_index.range_search(phash_codes(query.phashes), config.phash_radius):
            for i, d in zip(iq[:kprime].tolist(), dq[:kprime].tolist(), strict=True):
                if d < ph.get(i, 1 << 30):
                    ph[i] = d
    if phash_index is not None and query.mirror_phash is not None and (
            config.mirror_phash_radius > 0):
        (dq, iq), = phash_index.range_search(phash_codes([query.mirror_phash]),
                                             config.mirror_phash_radius)
        for i, d in zip(iq[:kprime].tolist(), dq[:kprime].tolist(), strict=True):
            if d < ph.get(i, 1 << 30):
                ph[i] = d
    cand = set(ham) | set(ph)
    cand.discard(-1)
    if query.exclude_id is not None:
        cand.discard(query.exclude_id)
    if not cand:
        return []
    ids = sorted(cand)
    embs: np.ndarray | None = None
    if embeddings is not None:
        try:
            ids, embs = embeddings.get(ids)
        except (ValueError, OSError):  # closed by a model swap meanwhile
            embs = None
    if embs is None:
        embs_by_id = catalog.fetch_embeddings(ids, model_id)
        ids = [i for i in ids if i in embs_by_id]
        embs = np.stack([embs_by_id[i] for i in ids]) if ids else None
    if not ids or embs is None:
        return []
    keep = []
    for j, i in enumerate(ids):
        if i not in ham:  # hash-channel-only candidate
            code = code_index.reconstruct(i)
            if code is None:  # no code of this model (yet): not searchable
                continue
            ham[i] = int(hamming_matrix(query.codes, code[None]).min())
        keep.append(j)
    if len(keep) < len(ids):
        ids, embs = [ids[j] for j in keep], embs[keep]
        if not ids:
            return []
    cos = np.clip((query.embeddings @ embs.T).max(axis=0), -1.0, 1.0)  # fp16 rounding
    t = config.thresholds
    # A file outside the hash channel has a pHash distance > phash_radius; when that radius
    # covers the near-duplicate threshold, its tier depends on cosine only.
    ph_known_enough = config.phash_radius >= t.near_duplicate_phash
    need_ph = [i for i in ids if i not in ph and not ph_known_enough]
    if need_ph and phash_index is not None and query.phashes:
        for i in need_ph:
            code = phash_index.reconstruct(i)
            if code is not None:
                ph[i] = int(hamming_matrix(phash_codes(query.phashes), code[None]).min())
    # Provisional order (identical only possible for pHash distance <= identical_phash);
    # then exact tiers for the identical candidates and the best k of the rest.
    # (vectorised: this runs for every candidate of every search)
    n = len(ids)
    ida = np.asarray(ids, dtype=np.int64)
    ham_a = np.fromiter((ham[i] for i in ids), dtype=np.int64, count=n)
    ph_a = np.fromiter((ph.get(i, 1 << 30) for i in ids), dtype=np.int64, count=n)
    cos64 = cos.astype(np.float64)
    ph_near = ph_a <= t.near_duplicate_phash
    near = ph_near | (cos64 >= t.near_duplicate_cosine)
    rank0 = np.where(ph_a <= t.identical_phash, 0,
                     np.where(near, _TIER_RANK["near_duplicate"], _TIER_RANK["similar"]))
    order = np.lexsort((ida, ham_a, -cos64, np.where(ph_near, 0, 1), rank0))
    if radius is not None:  # outside the radius only what the tiers call near-duplicate
        order = order[((ham_a <= radius) | near)[order]]
    first = rank0[order] == 0
    chosen = np.concatenate([order[first], order[~first][:k]]).tolist()
    recs = catalog.get_files([ids[j] for j in chosen])
    hits = []
    for j in chosen:
        i = ids[j]
        rec = recs.get(i)
        if rec is None:
            continue
        ph_d = ph.get(i)
        if ph_d is None and query.phashes and rec.phash is not None:
            ph_d = min(_phash_dist(q, rec.phash) for q in query.phashes)
        same = (query.fingerprint is not None and rec.fingerprint == query.fingerprint
                and rec.size == query.size)
        same_dims = query.dims is not None and query.dims in (
            (rec.width, rec.height), (rec.height, rec.width))
        tier = _tier(t, ph.get(i), float(cos[j]), same, same_dims)
        if (query.flat or rec.flat) and not same:
            tier = "similar"  # a flat picture's hashes match every other flat picture's
            if radius is not None and ham[i] > radius:
                continue
        hits.append(SearchHit(
            file_id=i, path=rec.path, score=float(cos[j]), hamming=int(ham[i]),
            phash_distance=ph_d, tier=tier, size=rec.size, mtime=rec.mtime_ns / 1e9,
            width=rec.width, height=rec.height))
    return order_hits(hits, t, query.dims, config.near_tie)[:k]


def centre_linkage(n: int, compatible: Callable[[int, np.ndarray], np.ndarray]
                   ) -> list[list[int]]:
    """Groups of positions ``0..n-1``: each group is a *centre* and the files compatible
    with it, the centre first.

    Linking files one pair at a time chains look-alikes: in a panning burst each frame is a
    near-duplicate of the next, so one connected component would hold the first and the last
    frame although they share little. Requiring every pair of a group to be compatible goes
    too far the other way: a grey-scale copy and a crop of one photo are both copies of it,
    yet hardly like each other. So a group is one photo and its copies: the file compatible
    with the most others becomes a centre (ties: the lower position) and takes every
    not-yet-grouped file compatible with it; repeat among the rest.

    Args:
        n: number of files.
        compatible: ``compatible(j, others)``: bool array, whether file ``j`` and each of the
            positions ``others`` are near-duplicates.

    Returns:
        Groups of at least two positions, centre first, the others ascending.
    """
    everyone = np.arange(n)
    degree = [int(compatible(j, everyone[everyone != j]).sum()) for j in range(n)]
    free = np.ones(n, dtype=bool)
    groups = []
    for c in sorted(range(n), key=lambda j: (-degree[j], j)):
        if not free[c]:
            continue
        free[c] = False
        others = np.flatnonzero(free)
        members = others[compatible(c, others)] if len(others) else others
        if len(members):
            free[members] = False
            groups.append([c, *members.tolist()])
    return groups


def find_duplicates(
    *, catalog: Catalog, model_id: str, code_index: BinaryIndex,
    phash_index: BinaryIndex | None, thresholds: TierThresholds = TierThresholds(),
    neighbours: int = 8, chunk: int = 4096, mirror_phash_radius: int = 4,
    check_pair: Callable[[str, str], bool] | None = None, check_floor: float = LOOSE_COSINE,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[DuplicateGroup]:
    """Group the whole library into sets of identical / near-duplicate files.

    Two files are *compatible* when their pHash distance is ``<= near_duplicate_phash``, the
    pHash of one's mirror image is within ``mirror_phash_radius`` of the other's pHash, or
    their embedding cosine is ``>= near_duplicate_cosine``. Candidate links come from the
    pHash index (range searches) and from each file's ``neighbours`` nearest codes; within
    each connected set of links, :func:`centre_linkage` makes the groups: a photo (first in
    the group) and the files compatible with it, so look-alikes do not chain. A group is
    ``identical`` if all its files share one fingerprint, or one pixel size and pHash
    distance ``<= identical_phash`` to the first, else ``near_duplicate``.

    ``check_pair(path_a, path_b)``, when given, looks at the pixels of near neighbours whose
    cosine is between ``check_floor`` and ``near_duplicate_cosine`` (crops, mostly: see
    :class:`core.library.verify.CropVerifier`); the pairs it accepts are compatible too.
    ``should_stop`` is polled between those checks (the slow part); a stop returns ``[]``.
    ``on_progress(done, total)`` reports them (every 50 pairs and at the end).

    A flat file (``FileRecord.flat``: blank, one colour) is compatible with its byte-identical
    copies only: flat pictures all share about one pHash and one embedding.
    """
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    def link(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        parent.setdefault(ra, ra)
        parent.setdefault(rb, rb)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    flat = catalog.flat_ids()
    # A flat file's identity: its bytes (size, fingerprint); no fingerprint: itself only.
    flat_key: dict[int, tuple] = {
        r.id: (r.size, r.fingerprint) if r.fingerprint else ("file", r.id)
        for r in catalog.get_files(sorted(flat)).values()}

    def link_hashes(ids: np.ndarray, hashes: np.ndarray, radius: int) -> None:
        """Link each file to the files whose pHash lies within ``radius`` of its hash."""
        if phash_index is None or radius <= 0:
            return
        for s in range(0, len(ids), chunk):
            q = phash_codes(hashes[s:s + chunk].tolist())
            for qi, (_, found) in enumerate(phash_index.range_search(q, radius)):
                a = int(ids[s + qi])
                if a in flat:
                    continue
                for b in found:
                    if int(b) != a and int(b) not in flat:
                        link(a, int(b))

    copies: dict[tuple, int] = {}
    for i, key in flat_key.items():  # flat files: byte-identical copies only
        if key in copies:
            link(copies[key], i)
        else:
            copies[key] = i

    ph_ids, phs = catalog.all_phashes()
    link_hashes(ph_ids, phs, thresholds.near_duplicate_phash)
    mirror_ids, mirrors = catalog.all_phashes(mirror=True)
    link_hashes(mirror_ids, mirrors, mirror_phash_radius)
    e_ids, embs = catalog.all_embeddings(model_id)
    pos = {int(i): j for j, i in enumerate(e_ids)}
    to_check: set[tuple[int, int]] = set()
    if len(e_ids) > 1:
        for s in range(0, len(e_ids), chunk):
            part = e_ids[s:s + chunk]
            codes = np.stack([code_index.reconstruct(int(i)) for i in part])
            _, nn = code_index.search(codes, min(neighbours + 1, len(e_ids)))
            for qi, row in enumerate(nn):
                a = int(part[qi])
                if a in flat:
                    continue
                ea = embs[pos[a]]
                for b in row:
                    b = int(b)
                    if b < 0 or b == a or b not in pos or b in flat:
                        continue
                    cos = float(ea @ embs[pos[b]])
                    if cos >= thresholds.near_duplicate_cosine:
                        link(a, b)
                    elif check_pair is not None and cos >= check_floor:
                        to_check.add((min(a, b), max(a, b)))
    checked: set[tuple[int, int]] = set()
    if to_check:
        recs = catalog.get_files(sorted({i for pair in to_check for i in pair}))
        for n, (a, b) in enumerate(sorted(to_check)):
            if should_stop is not None and should_stop():
                return []
            if on_progress is not None and n % 50 == 0:
                on_progress(n, len(to_check))
            if a in recs and b in recs and check_pair(recs[a].path, recs[b].path):
                checked.add((a, b))
                link(a, b)
        if on_progress is not None:
            on_progress(len(to_check), len(to_check))
        logger.info("duplicates: %d of %d look-alike pairs pass the pixel check",
                    len(checked), len(to_check))
    components: dict[int, list[int]] = {}
    for x in list(parent):
        components.setdefault(find(x), []).append(x)
    ph_of = dict(zip(ph_ids.tolist(), phs.tolist(), strict=True))
    mirror_of = dict(zip(mirror_ids.tolist(), mirrors.tolist(), strict=True))
    out = []
    for members in components.values():
        members = sorted(members)
        compatible = _Compatibility(members, ph_of, mirror_of, pos, embs, thresholds,
                                    mirror_phash_radius, checked, flat_key)
        for positions in centre_linkage(len(members), compatible):
            group = [members[j] for j in positions]
            recs = [r for r in (catalog.get_file(i) for i in group) if r is not None]
            if len(recs) < 2:
                continue
            first = recs[0]
            same_fp = all(r.fingerprint == first.fingerprint and r.size == first.size
                          for r in recs)
            same_ph = first.phash is not None and all(
                r.phash is not None and _phash_dist(r.phash, first.phash)
                <= thresholds.identical_phash
                and (r.width, r.height) == (first.width, first.height) for r in recs)
            out.append(DuplicateGroup("identical" if same_fp or same_ph else "near_duplicate",
                                      tuple(recs)))
    out.sort(key=lambda g: (-len(g.files), g.files[0].path))
    return out


class _Compatibility:
    """``compatible(j, others)`` for :func:`centre_linkage` over one component's members:
    pHash distance ``<= near_duplicate_phash``, mirror-image pHash (either way round) within
    ``mirror_radius``, or embedding cosine ``>= near_duplicate_cosine`` (each measure where
    both files have one), or a ``checked`` pair (ids, smaller first). A flat file (a key in
    ``flat_key``: its bytes) is compatible only with the files of the same key. One row at a
    time, so a large component never needs an ``n x n`` matrix."""

    def __init__(self, members: Sequence[int], ph_of: dict[int, int],
                 mirror_of: dict[int, int], pos: dict[int, int], embs: np.ndarray,
                 thresholds: TierThresholds, mirror_radius: int,
                 checked: set[tuple[int, int]],
                 flat_key: dict[int, tuple] | None = None) -> None:
        self.members = list(members)
        self.flat_key = [(flat_key or {}).get(m) for m in members]
        self.flat = np.array([k is not None for k in self.flat_key], dtype=bool)
        self.checked = checked
        self.t = thresholds
        self.mirror_radius = mirror_radius
        self.has_ph = np.array([m in ph_of for m in members], dtype=bool)
        self.ph = phash_codes([ph_of.get(m, 0) for m in members])
        self.has_mirror = np.array([m in mirror_of for m in members], dtype=bool)
        self.mirror = phash_codes([mirror_of.get(m, 0) for m in members])
        self.has_emb = np.array([m in pos for m in members], dtype=bool)
        dim = embs.shape[1] if embs.ndim == 2 else 0
        self.emb = (embs[[pos[m] for m in members if m in pos]] if self.has_emb.any()
                    else np.zeros((0, dim), np.float32))
        self.row = np.cumsum(self.has_emb) - 1  # member position -> row of self.emb

    def __call__(self, j: int, others: np.ndarray) -> np.ndarray:
        b = np.asarray(others, dtype=np.int64)
        if self.flat[j] or self.flat[b].any():
            key = self.flat_key[j]
            same = np.array([key is not None and self.flat_key[o] == key for o in b.tolist()],
                            dtype=bool)
            if self.flat[j]:
                return same
            return self._compatible(j, b) & ~self.flat[b]
        return self._compatible(j, b)

    def _compatible(self, j: int, b: np.ndarray) -> np.ndarray:
        both = self.has_ph[j] & self.has_ph[b]
        ok = (hamming_matrix(self.ph[j:j + 1], self.ph[b])[0] <= self.t.near_duplicate_phash
              ) & both
        if self.mirror_radius > 0:
            ok |= (hamming_matrix(self.mirror[j:j + 1], self.ph[b])[0] <= self.mirror_radius
                   ) & self.has_mirror[j] & self.has_ph[b]
            ok |= (hamming_matrix(self.ph[j:j + 1], self.mirror[b])[0] <= self.mirror_radius
                   ) & self.has_ph[j] & self.has_mirror[b]
        if self.has_emb[j] and self.has_emb[b].any():
            eb = self.has_emb[b]
            cos = np.full(len(b), -1.0, dtype=np.float32)
            cos[eb] = self.emb[self.row[b[eb]]] @ self.emb[self.row[j]]
            ok |= cos >= self.t.near_duplicate_cosine
        if self.checked:
            m = self.members[j]
            ok |= np.array([(min(m, self.members[o]), max(m, self.members[o])) in self.checked
                            for o in b.tolist()], dtype=bool)
        return ok
