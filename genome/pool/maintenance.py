"""Pool upkeep: `verify` (everything checked, nothing changed), `compact` (unreferenced genes and
blobs removed, packs rewritten) and `stats`."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from genome.errors import BadInput
from genome.formats.base import TensorInfo
from genome.pool import attest, merkle, store
from genome.pool.gene import content_digest, gene_hash
from genome.pool.levels import plan

_MAX_LISTED = 20


def verify(pool: Any) -> dict[str, Any]:
    """Check every blob, gene, reference and signature of a pool.

    Returns:
        {"clean": no errors, "errors": [...], "notes": [...] (harmless, e.g. files an interrupted
        ingest left), "checked": counts}.
    """
    db = pool.db
    pool._checked.clear()  # verify checks everything afresh
    pool._batches.clear()
    errors: list[str] = []
    notes: list[str] = []
    err = errors.append
    ok = db.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        err(f"SQLite integrity check: {ok}")
    # blobs
    blob_rows = db.execute("SELECT hash, pack FROM blobs").fetchall()
    packs = {r[0] for r in db.execute("SELECT name FROM packs")}
    for h, pack in blob_rows:
        if pack not in packs:
            err(f"blob {h[:16]} points into unknown pack {pack}")
            continue
        try:
            pool.reader.read(h)
        except store.PoolCorrupt as e:
            err(str(e))
    blobs = {h for h, _ in blob_rows}
    # genes
    genes = {r[0]: r[1:] for r in db.execute("SELECT hash, kind, blob, base, dtype, shape, parent, refs, batch FROM genes")}
    refs: Counter[str] = Counter(r[0] for r in db.execute("SELECT gene FROM blocks"))
    for h, (kind, blob, base, dtype, shape, parent, _, _) in genes.items():
        if blob not in blobs:
            err(f"gene {h[:16]}: its blob {blob[:16]} is missing")
        if base is not None:
            refs[base] += 1
            if base not in genes:
                err(f"gene {h[:16]}: its delta base {base[:16]} is missing")
        if parent is not None and parent in genes:
            refs[parent] += 1
    for h, n in refs.items():
        if h not in genes:
            err(f"{n} reference(s) to missing gene {h[:16]}")
    for h, (*_, stored_refs, _) in genes.items():
        if stored_refs != refs.get(h, 0):
            err(f"gene {h[:16]}: reference count {stored_refs}, but {refs.get(h, 0)} references exist")
    # gene contents and attestations
    for h, (kind, blob, base, dtype, shape, *_rest) in genes.items():
        if base is None and blob in blobs:
            if gene_hash(kind, dtype, tuple(json.loads(shape)), bytes.fromhex(blob)) != h:
                err(f"gene {h[:16]}: its id does not match its blob")
        elif blob in blobs and base in genes:
            try:
                data = pool.exact_bytes(h)
                if gene_hash(kind, dtype, tuple(json.loads(shape)), content_digest(data)) != h:
                    err(f"gene {h[:16]}: its rebuilt data does not match its id")
            except BadInput as e:
                err(str(e))
        try:
            pool.check_attestation(pool.gene(h))
        except store.PoolCorrupt as e:
            err(str(e))
    public = attest.public_key(pool.path)
    for batch, root, signature, key, count in db.execute("SELECT id, root, signature, public_key, count FROM batches"):
        leaves = [r[0] for r in db.execute("SELECT hash FROM leaves WHERE batch = ? ORDER BY idx", (batch,))]
        if len(leaves) != count or merkle.root(leaves) != root:
            err(f"attestation batch {batch}: its leaves no longer hash to the signed root")
        elif key != public or not attest.check_signature(key, batch, root, count, signature):
            err(f"attestation batch {batch}: the signature does not verify with the pool's public key")
    # models: every tensor's blocks are present and complete
    for mid, name, kind in db.execute("SELECT id, name, kind FROM models").fetchall():
        for idx, tname, dtype, shape, nbytes, perm in db.execute(
                "SELECT idx, name, dtype, shape, nbytes, perm FROM tensors WHERE model = ?", (mid,)).fetchall():
            n = db.execute("SELECT COUNT(*) FROM blocks WHERE model = ? AND tensor = ?", (mid, idx)).fetchone()[0]
            if kind == "weights":
                expected = plan(TensorInfo(tname, tuple(json.loads(shape)), dtype, nbytes),
                                int(pool.config["block"])).count
                if n != expected:
                    err(f"model {name!r} tensor {tname!r}: {n} blocks recorded, {expected} expected")
            if perm is not None and perm not in blobs:
                err(f"model {name!r} tensor {tname!r}: its permutation blob {perm[:16]} is missing")
    temps, orphans = store.leftovers(pool.path, db)
    if temps:
        notes.append(f"{len(temps)} temporary file(s) left by an interrupted write (removed by the next write)")
    if orphans:
        notes.append(f"{len(orphans)} pack file(s) no index row points to, left by an interrupted ingest "
                     f"(removed by the next write or by compact)")
    live = {g[1] for g in genes.values()} | {r[0] for r in db.execute("SELECT perm FROM tensors WHERE perm IS NOT NULL")}
    if blobs - live:
        notes.append(f"{len(blobs - live)} unreferenced blob(s) (removed by compact)")
    unreferenced = sum(1 for g in genes.values() if g[6] == 0)
    if unreferenced:
        notes.append(f"{unreferenced} gene(s) with no reference (removed by compact)")
    if len(errors) > _MAX_LISTED:
        errors = errors[:_MAX_LISTED] + [f"... and {len(errors) - _MAX_LISTED} more"]
    return {"clean": not errors, "errors": errors, "notes": notes,
            "checked": {"blobs": len(blobs), "genes": len(genes), "batches": db.execute(
                "SELECT COUNT(*) FROM batches").fetchone()[0]}}


def compact(pool: Any) -> dict[str, Any]:
    """Remove genes nothing references (repeatedly: a removed delta frees its base), then rewrite
    the packs with only the blobs still referenced. Returns counts and bytes freed."""
    db = pool.db
    with store.writer_lock(pool.path):
        left = store.remove_leftovers(pool.path, db)
        before = db.execute("SELECT COALESCE(SUM(length), 0) FROM blobs").fetchone()[0]
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
            live = {r[0] for r in db.execute("SELECT blob FROM genes")} | \
                {r[0] for r in db.execute("SELECT perm FROM tensors WHERE perm IS NOT NULL")}
            rows = db.execute("SELECT hash, pack, offset, length, size, codec FROM blobs").fetchall()
            keep = [r for r in rows if r[0] in live]
            old_packs = [r[0] for r in db.execute("SELECT name FROM packs")]
            writer = store.PackWriter(pool.path)
            for h, pack, offset, length, size, codec in keep:
                m = pool.reader._map(pack)
                writer.add_stored(h, bytes(m[offset:offset + length]), size, codec)
            name = writer.finish(durable=True)
            db.execute("DELETE FROM blobs")
            db.execute("DELETE FROM packs")
            if name is not None:
                db.execute("INSERT INTO packs VALUES (?, ?, strftime('%s','now'))", (name, writer.offset))
                db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                               [(h, name, o, ln, sz, c) for h, (o, ln, sz, c) in writer.blobs.items()])
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
    after = db.execute("SELECT COALESCE(SUM(length), 0) FROM blobs").fetchone()[0]
    return {"genes_removed": removed, "blobs_removed": len(rows) - len(keep), "bytes_before": before,
            "bytes_after": after, "leftovers_removed": left}


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
    for (meta,) in db.execute("SELECT meta FROM genes"):
        roles[json.loads(meta).get("role", "code")] += 1
    stored = db.execute("SELECT COALESCE(SUM(length), 0) FROM blobs").fetchone()[0]
    logical = sum(m[2] for m in models)
    return {
        "path": str(pool.path),
        "models": [{"name": n, "kind": k, "bytes": b, "stored": s} for n, k, b, s, _ in models],
        "genes": db.execute("SELECT COUNT(*) FROM genes").fetchone()[0],
        "genes_by_kind": dict(db.execute("SELECT kind, COUNT(*) FROM genes GROUP BY kind").fetchall()),
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
        "blobs": db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0],
        "packs": db.execute("SELECT COUNT(*) FROM packs").fetchone()[0],
        "batches": db.execute("SELECT COUNT(*) FROM batches").fetchone()[0],
        "merkle_root": pool.merkle_root(),
        "public_key": attest.public_key(pool.path),
    }
