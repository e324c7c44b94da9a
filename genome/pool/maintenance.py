"""Pool upkeep: `verify` (everything checked, nothing changed), `compact` (unreferenced genes and
blobs removed, packs rewritten) and `stats`."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from genome.errors import BadInput
from genome.formats.base import TensorInfo
from genome.pool import attest, store
from genome.pool.gene import content_digest, gene_hash
from genome.pool.levels import plan
from genome.pool.packs import PackWriter

_MAX_LISTED = 20


def verify(pool: Any) -> dict[str, Any]:
    """Check every blob, gene, reference and signature of a pool.

    Returns:
        {"clean": no errors, "errors": [...], "notes": [...] (harmless, e.g. files an interrupted
        ingest left), "checked": counts}.
    """
    db = pool.db
    pool.ledger.forget()  # verify checks everything afresh
    errors: list[str] = []
    notes: list[str] = []
    err = errors.append
    ok = db.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        err(f"SQLite integrity check: {ok}")
    packs = {r[0] for r in db.execute("SELECT id FROM packs")}
    # payloads: every gene's and every shared blob's, each stored copy read once
    genes = {r[0]: r[1:] for r in db.execute(
        "SELECT g.hash, m.kind, g.blob, g.base, m.dtype, m.shape, g.parent, g.refs, g.pack, g.offset, g.length, g.size, "
        "g.codec FROM genes g LEFT JOIN metas m ON m.id = g.meta")}
    shared = {r[0]: tuple(r[1:]) for r in db.execute("SELECT hash, pack, offset, length, size, codec FROM blobs")}
    payloads = {(blob, tuple(loc)) for _kind, blob, _b, _d, _s, _p, _r, *loc in genes.values()}
    payloads |= {(h, loc) for h, loc in shared.items()}
    broken: set[bytes] = set()
    for digest, loc in sorted(payloads):
        if loc[0] not in packs:
            err(f"blob {digest.hex()[:16]} points into unknown pack {loc[0]}")
            broken.add(digest)
            continue
        try:
            pool.reader.read_at(digest, loc)
        except store.PoolCorrupt as e:
            err(str(e))
            broken.add(digest)
    # references: model blocks, delta bases and version parents
    refs: Counter[bytes] = Counter()
    for (packed,) in db.execute("SELECT genes FROM tensors"):
        refs.update(store.split32(packed))
    for h, (kind, blob, base, dtype, shape, parent, _, *_loc) in genes.items():
        if base is not None:
            refs[base] += 1
            if base not in genes:
                err(f"gene {h.hex()[:16]}: its delta base {base.hex()[:16]} is missing")
        if parent is not None and parent in genes:
            refs[parent] += 1
    for h, n in refs.items():
        if h not in genes:
            err(f"{n} reference(s) to missing gene {h.hex()[:16]}")
    for h, (*_, stored_refs, _pack, _o, _l, _s, _c) in genes.items():
        if stored_refs != refs.get(h, 0):
            err(f"gene {h.hex()[:16]}: reference count {stored_refs}, but {refs.get(h, 0)} references exist")
    # gene contents and attestations
    for h, (kind, blob, base, dtype, shape, *_rest) in genes.items():
        if kind is None:
            err(f"gene {h.hex()[:16]}: its metadata row is missing")
            continue
        if base is None and blob not in broken:
            if gene_hash(kind, dtype, tuple(json.loads(shape)), blob) != h.hex():
                err(f"gene {h.hex()[:16]}: its id does not match its blob")
        elif base is not None and blob not in broken and base in genes:
            try:
                data = pool.exact_bytes(h.hex())
                if gene_hash(kind, dtype, tuple(json.loads(shape)), content_digest(data)) != h.hex():
                    err(f"gene {h.hex()[:16]}: its rebuilt data does not match its id")
            except BadInput as e:
                err(str(e))
        try:
            pool.ledger.check_attestation(pool.gene(h.hex()))
        except store.PoolCorrupt as e:
            err(str(e))
    for (batch,) in db.execute("SELECT id FROM batches").fetchall():  # checked once each, with the genes' checks
        problem = pool.ledger.batch_problem(batch)
        if problem is not None:
            err(f"attestation batch {batch}: {problem}")
    # models: every tensor's blocks are present and complete
    for mid, name, kind in db.execute("SELECT id, name, kind FROM models").fetchall():
        for tname, dtype, shape, nbytes, perm, packed, levels in db.execute(
                "SELECT name, dtype, shape, nbytes, perm, genes, levels FROM tensors WHERE model = ?", (mid,)).fetchall():
            n = len(packed) // 32
            if len(packed) % 32 or len(levels) != n:
                err(f"model {name!r} tensor {tname!r}: its gene list is damaged")
            if kind == "weights":
                expected = plan(TensorInfo(tname, tuple(json.loads(shape)), dtype, nbytes),
                                int(pool.config["block"])).count
                if n != expected:
                    err(f"model {name!r} tensor {tname!r}: {n} blocks recorded, {expected} expected")
            if perm is not None and perm not in shared:
                err(f"model {name!r} tensor {tname!r}: its permutation blob {perm.hex()[:16]} is missing")
    temps, orphans = store.leftovers(pool.path, db)
    if temps:
        notes.append(f"{len(temps)} temporary file(s) left by an interrupted write (removed by the next write)")
    if orphans:
        notes.append(f"{len(orphans)} pack file(s) no index row points to, left by an interrupted ingest "
                     f"(removed by the next write or by compact)")
    live = {r[0] for r in db.execute("SELECT perm FROM tensors WHERE perm IS NOT NULL")}
    if set(shared) - live:
        notes.append(f"{len(set(shared) - live)} unreferenced blob(s) (removed by compact)")
    unreferenced = sum(1 for g in genes.values() if g[6] == 0)
    if unreferenced:
        notes.append(f"{unreferenced} gene(s) with no reference (removed by compact)")
    if len(errors) > _MAX_LISTED:
        errors = errors[:_MAX_LISTED] + [f"... and {len(errors) - _MAX_LISTED} more"]
    return {"clean": not errors, "errors": errors, "notes": notes,
            "checked": {"blobs": len(payloads), "genes": len(genes), "batches": db.execute(
                "SELECT COUNT(*) FROM batches").fetchone()[0]}}


def compact(pool: Any) -> dict[str, Any]:
    """Remove genes nothing references (repeatedly: a removed delta frees its base), then rewrite
    the packs with only the payloads still referenced. Returns counts and bytes freed."""
    db = pool.db
    with store.writer_lock(pool.path):
        left = store.remove_leftovers(pool.path, db)
        before = _stored_bytes(db)
        removed = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            while True:
                dead = db.execute("SELECT hash, base, parent FROM genes WHERE refs <= 0").fetchall()
                if not dead:
                    break
                db.executemany("DELETE FROM genes WHERE hash = ?", [(h,) for h, _, _ in dead])
                dec = Counter([b for _, b, _ in dead if b] + [p for _, _, p in dead if p])
                db.executemany("UPDATE genes SET refs = refs - ? WHERE hash = ?", [(n, h) for h, n in dec.items()])
                removed += len(dead)
            perms = {r[0] for r in db.execute("SELECT perm FROM tensors WHERE perm IS NOT NULL")}
            shared = db.execute("SELECT hash, pack, offset, length, size, codec FROM blobs").fetchall()
            keep_shared = [r for r in shared if r[0] in perms]
            genes = db.execute("SELECT hash, blob, pack, offset, length, size, codec FROM genes").fetchall()
            old_packs = [r[0] for r in db.execute("SELECT name FROM packs")]
            pack_id = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM packs").fetchone()[0]
            writer = PackWriter(pool.path)
            for digest, *loc in [(b, *loc) for _, b, *loc in genes] + keep_shared:
                writer.add_stored(digest, pool.reader.stored(tuple(loc)), loc[3], loc[4])
            name = writer.finish(durable=True)
            db.execute("DELETE FROM blobs")
            db.execute("DELETE FROM packs")
            if name is not None:
                db.execute("INSERT INTO packs VALUES (?, ?, ?, strftime('%s','now'))", (pack_id, name, writer.offset))
                db.executemany("UPDATE genes SET pack = ?, offset = ?, length = ? WHERE hash = ?",
                               [(pack_id, *writer.blobs[b][:2], h) for h, b, *_ in genes])
                db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                               [(h, pack_id, *writer.blobs[h]) for h, *_ in keep_shared])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        pool.reader.close()
        for pack in old_packs:
            if pack != name:
                (pool.path / store.OBJECTS / pack).unlink(missing_ok=True)
        db.execute("VACUUM")
    after = _stored_bytes(db)
    return {"genes_removed": removed, "blobs_removed": before[1] - after[1], "bytes_before": before[0],
            "bytes_after": after[0], "leftovers_removed": left}


def _stored_bytes(db: Any) -> tuple[int, int]:
    """(stored bytes of the distinct payloads the index points to, how many there are)."""
    rows = {tuple(r) for r in db.execute("SELECT pack, offset, length FROM genes UNION "
                                         "SELECT pack, offset, length FROM blobs")}
    return sum(r[2] for r in rows), len(rows)


def stats(pool: Any) -> dict[str, Any]:
    """Counts and bytes of a pool, per level, kind, status and role."""
    db = pool.db
    models = db.execute("SELECT name, kind, nbytes, stored, stats FROM models ORDER BY id").fetchall()
    totals: Counter[str] = Counter()
    for _, _, _, _, s in models:
        d = json.loads(s)
        totals["genes_in"] += d["genes_in"]
        for k in ("1", "2", "3", "4"):
            totals[f"collapsed_l{k}"] += d["collapsed"][k]
        for k in ("delta_genes", "delta_bytes", "level_deltas", "requires_verification"):
            totals[k] += d.get(k, 0)
    roles: Counter[str] = Counter()
    for meta, n in db.execute("SELECT m.json, COUNT(*) FROM genes g JOIN metas m ON m.id = g.meta GROUP BY g.meta"):
        roles[json.loads(meta).get("role", "code")] += n
    stored, payloads = _stored_bytes(db)
    logical = sum(m[2] for m in models)
    return {
        "path": str(pool.path),
        "models": [{"name": n, "kind": k, "bytes": b, "stored": s} for n, k, b, s, _ in models],
        "genes": db.execute("SELECT COUNT(*) FROM genes").fetchone()[0],
        "genes_by_kind": dict(db.execute("SELECT m.kind, COUNT(*) FROM genes g JOIN metas m ON m.id = g.meta "
                                         "GROUP BY m.kind").fetchall()),
        "genes_by_status": dict(db.execute("SELECT status, COUNT(*) FROM genes GROUP BY status").fetchall()),
        "genes_by_role": dict(roles),
        "delta_coded": db.execute("SELECT COUNT(*) FROM genes WHERE base IS NOT NULL").fetchone()[0],
        "references": db.execute("SELECT COALESCE(SUM(refs), 0) FROM genes").fetchone()[0],
        "genes_in": totals["genes_in"],
        **{f"unique_l{k}": totals["genes_in"] - sum(totals[f"collapsed_l{j}"] for j in range(1, k + 1))
           for k in (1, 2, 3, 4)},
        "delta_bytes": totals["delta_bytes"],
        "requires_verification": totals["requires_verification"],
        "bytes_logical": logical,
        "bytes_stored": stored,
        "ratio": logical / max(stored, 1),
        "blobs": payloads,
        "packs": db.execute("SELECT COUNT(*) FROM packs").fetchone()[0],
        "batches": db.execute("SELECT COUNT(*) FROM batches").fetchone()[0],
        "merkle_root": pool.ledger.merkle_root(),
        "public_key": attest.public_key(pool.path),
    }
