from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from entityseg_data.catalog import MIGRATIONS, Catalog, ImageRecord, Migration
from entityseg_data.errors import CatalogError


def _add(cat: Catalog, i: int) -> int:
    return cat.add_image(
        sha256=f"{i:064x}",
        source="folder",
        source_id=f"img{i}",
        width=10,
        height=10,
        domain_tags=["x"],
        extra={"k": i},
    )


def test_add_and_read(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        iid = _add(cat, 1)
        row = cat.image(iid)
        assert isinstance(row, ImageRecord)
        assert row.domain_tags == ("x",) and row.extra == {"k": 1}
        cat.set_verdict(iid, "nsfw", "reject", "score 0.9 >= 0.5", 0.9)
        cat.set_verdict(iid, "nsfw", "pass", "score 0.1 < 0.5", 0.1)  # upsert
        assert [v.verdict for v in cat.verdicts(iid)] == ["pass"]
        cat.set_annotation(iid, 1, "ann1", status="pushed", ls_task_id=5)
        cat.set_annotation(iid, 1, "ann1", status="pulled", n_entities=3)
        (a,) = cat.annotations(stage=1)
        assert a.status == "pulled" and a.ls_task_id == 5 and a.n_entities == 3
        s = cat.summary()
        assert s["by_source"] == {"folder": 1} and s["by_stage"] == {"stage1:pulled": 1}
        df = cat.to_pandas()
        assert list(df["source_id"]) == ["img1"]
        cat.to_parquet(tmp_path / "images.parquet")
        import pandas as pd

        assert len(pd.read_parquet(tmp_path / "images.parquet")) == 1
        with pytest.raises(CatalogError, match="unknown image fields"):
            cat.add_image(sha256="z", source="a", source_id="b", nope=1)


def test_transaction_rolls_back_whole_batch(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        with pytest.raises(RuntimeError), cat.transaction():
            for i in range(5):
                _add(cat, i)
            raise RuntimeError("boom mid-batch")
        assert cat.scalar("SELECT COUNT(*) FROM images") == 0
        with cat.transaction():
            for i in range(5):
                _add(cat, i)
        assert cat.scalar("SELECT COUNT(*) FROM images") == 5


def test_crash_mid_batch_leaves_catalog_consistent(tmp_path):
    db = tmp_path / "c.sqlite"
    with Catalog(db) as cat:
        _add(cat, 0)
    code = textwrap.dedent(f"""
        import os
        from entityseg_data.catalog import Catalog
        cat = Catalog({str(db)!r})
        with cat.transaction():
            for i in range(1, 100):
                cat.add_image(sha256=f"{{i:064x}}", source="s", source_id=str(i))
            os._exit(1)   # killed before COMMIT
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == 1
    with Catalog(db) as cat:
        assert cat.scalar("SELECT COUNT(*) FROM images") == 1
        assert cat.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        _add(cat, 7)  # still writable
        assert cat.scalar("SELECT COUNT(*) FROM images") == 2


def test_reader_sees_snapshot_during_write(tmp_path):
    db = tmp_path / "c.sqlite"
    writer = Catalog(db)
    reader = Catalog(db)
    _add(writer, 0)
    with writer.transaction():
        _add(writer, 1)
        # the uncommitted row is invisible to a concurrent reader, which is not blocked
        assert reader.scalar("SELECT COUNT(*) FROM images") == 1
    assert reader.scalar("SELECT COUNT(*) FROM images") == 2
    assert writer.scalar("PRAGMA journal_mode") == "wal"
    writer.close()
    reader.close()


def test_migrations_forward_and_refuse_newer(tmp_path):
    db = tmp_path / "c.sqlite"
    with Catalog(db) as cat:
        assert cat.version == MIGRATIONS[-1].version
        _add(cat, 1)
    extra = Migration(
        MIGRATIONS[-1].version + 1, "add a column", "ALTER TABLE images ADD COLUMN quality REAL;"
    )
    with Catalog(db, migrations=(*MIGRATIONS, extra)) as cat:
        assert cat.version == extra.version
        assert "quality" in [r[1] for r in cat.query("PRAGMA table_info(images)")]
        assert cat.image(1).id == 1  # records ignore columns they do not know
    with pytest.raises(CatalogError, match="newer than this toolkit"):
        Catalog(db)


def test_failed_migration_is_rolled_back(tmp_path):
    db = tmp_path / "c.sqlite"
    Catalog(db).close()
    bad = Migration(
        MIGRATIONS[-1].version + 1, "bad", "ALTER TABLE images ADD COLUMN q REAL;\nTHIS IS NOT SQL;"
    )
    with pytest.raises(sqlite3.OperationalError):
        Catalog(db, migrations=(*MIGRATIONS, bad))
    with Catalog(db) as cat:
        assert cat.version == MIGRATIONS[-1].version
        assert "q" not in [r[1] for r in cat.query("PRAGMA table_info(images)")]


def test_not_a_database(tmp_path):
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="junk.sqlite"):
        Catalog(p)
