"""The catalog's SQL schema as an ordered list of migrations.

Each migration is applied once, inside one transaction, and recorded in ``schema_migrations``.
Append new migrations at the end (never edit an applied one); :data:`SCHEMA_VERSION` is the
number of the last one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,          -- of the original bytes, as fetched
            phash TEXT,                           -- perceptual hash, hex
            source TEXT NOT NULL,                 -- adapter name: folder, urls, coco, ade20k, ...
            source_id TEXT NOT NULL,              -- id of the image within its source
            url TEXT,
            license TEXT,
            author TEXT,
            attribution TEXT,
            width INTEGER,                        -- upright (EXIF-applied) size in pixels
            height INTEGER,
            orig_orientation INTEGER,             -- EXIF orientation tag of the original (1 = none)
            file_path TEXT,                       -- original bytes, relative to the workspace
            norm_path TEXT,                       -- normalised copy (upright RGB), when needed
            mime TEXT,
            bytes INTEGER,
            domain_tags TEXT NOT NULL DEFAULT '[]',   -- JSON list
            status TEXT NOT NULL DEFAULT 'accepted',  -- accepted | rejected | duplicate
            split TEXT,                               -- train | val | test | NULL
            extra TEXT NOT NULL DEFAULT '{}',         -- JSON: caption, pre-annotation paths, ...
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE INDEX images_source ON images(source, source_id);
        CREATE INDEX images_phash ON images(phash);
        CREATE INDEX images_status ON images(status);

        -- one row per (image, filter): every verdict kept with its reason and score
        CREATE TABLE verdicts (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            filter TEXT NOT NULL,                 -- resolution | aspect | nsfw | iconic | ...
            verdict TEXT NOT NULL,                -- pass | reject
            reason TEXT,
            score REAL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (image_id, filter)
        );

        -- every candidate item a source produced: the resume ledger and the error report
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            source_id TEXT NOT NULL,
            url TEXT,
            state TEXT NOT NULL DEFAULT 'pending', -- pending | done | failed | duplicate | rejected
            image_id INTEGER REFERENCES images(id),
            error_kind TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            meta TEXT NOT NULL DEFAULT '{}',
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            UNIQUE (source, source_id)
        );
        CREATE INDEX items_state ON items(state);

        -- de-duplication audit: which candidate was dropped in favour of which kept image
        CREATE TABLE duplicates (
            id INTEGER PRIMARY KEY,
            kept_image_id INTEGER NOT NULL REFERENCES images(id),
            dropped_source TEXT NOT NULL,
            dropped_source_id TEXT NOT NULL,
            dropped_sha256 TEXT,
            kind TEXT NOT NULL,                   -- exact | near
            distance INTEGER,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            UNIQUE (dropped_source, dropped_source_id)
        );

        -- annotation state per image, stage and annotator
        CREATE TABLE annotations (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            stage INTEGER NOT NULL,               -- 1 = masks, 2 = names
            annotator TEXT NOT NULL,
            -- status: pending | pushed | submitted | pulled | approved | rejected
            status TEXT NOT NULL DEFAULT 'pending',
            ls_project_id INTEGER,
            ls_task_id INTEGER,
            ls_annotation_id INTEGER,
            mask_path TEXT,                       -- relative to the workspace
            n_entities INTEGER,
            qa TEXT NOT NULL DEFAULT '{}',        -- JSON QA findings
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (image_id, stage, annotator)
        );
        CREATE INDEX annotations_status ON annotations(stage, status);

        -- model pre-annotations (stage 1) per image
        CREATE TABLE predictions (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            model_version TEXT NOT NULL,
            path TEXT NOT NULL,                   -- COCO-RLE JSON, relative to the workspace
            n_entities INTEGER,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (image_id, model_version)
        );

        CREATE TABLE kv (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "annotation rounds",
        """
        -- one row per push that created tasks: a round of annotation (issue 18)
        CREATE TABLE rounds (
            id INTEGER PRIMARY KEY,
            stage INTEGER NOT NULL,
            model_version TEXT,                   -- seeds' model version (most common); NULL: none
            seed_versions TEXT NOT NULL DEFAULT '{}',  -- JSON {seed version: images}
            selection TEXT,                       -- selection name; NULL: not from a selection
            annotators TEXT NOT NULL DEFAULT '[]',     -- JSON list
            images TEXT NOT NULL DEFAULT '[]',         -- JSON list of image ids pushed
            n_tasks INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        ALTER TABLE annotations ADD COLUMN round_id INTEGER REFERENCES rounds(id);

        -- one row per pulled submission: time spent and edits against the seed it started from
        CREATE TABLE annotation_edits (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            stage INTEGER NOT NULL,
            annotator TEXT NOT NULL,
            submission TEXT NOT NULL,             -- the annotation tool's id of the submission
            round_id INTEGER REFERENCES rounds(id),
            seed_version TEXT NOT NULL DEFAULT '',
            status TEXT,                          -- pulled | rejected (QA at pull time)
            lead_time REAL,                       -- seconds, as the tool recorded (NULL: none)
            lead_time_source TEXT,                -- tool | simulated | NULL
            created_at TEXT,                      -- the submission's, from the tool
            updated_at TEXT,
            n_seed INTEGER NOT NULL DEFAULT 0,
            n_final INTEGER NOT NULL DEFAULT 0,
            unchanged INTEGER NOT NULL DEFAULT 0,
            edited INTEGER NOT NULL DEFAULT 0,
            deleted INTEGER NOT NULL DEFAULT 0,
            added INTEGER NOT NULL DEFAULT 0,
            iou_bins TEXT NOT NULL DEFAULT '{}',  -- JSON {"0.50-0.75": n, ...} of edited
            pixels_changed INTEGER NOT NULL DEFAULT 0,
            pixels_total INTEGER NOT NULL DEFAULT 0,
            seed_ap REAL,                         -- the seed against this submission (fractions)
            seed_ap50 REAL,
            seed_ar REAL,
            seed_boundary_ap REAL,
            pulled_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (image_id, stage, annotator, submission)
        );
        CREATE INDEX annotation_edits_round ON annotation_edits(round_id);

        -- submissions whose lead time was SIMULATED (demo / tutorial annotators)
        CREATE TABLE simulated_submissions (
            image_id INTEGER NOT NULL,
            stage INTEGER NOT NULL,
            annotator TEXT NOT NULL,
            submission TEXT NOT NULL,
            lead_time REAL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (image_id, stage, annotator, submission)
        );
        """,
    ),
    Migration(
        3,
        "selections",
        """
        -- named selections of images to annotate next (entityseg-data select)
        CREATE TABLE selections (
            name TEXT PRIMARY KEY,
            strategy TEXT NOT NULL,               -- uncertainty | random
            n_requested INTEGER NOT NULL,
            n_selected INTEGER NOT NULL,
            seed INTEGER NOT NULL DEFAULT 0,
            model_version TEXT,                   -- predictions scored (NULL: newest per image)
            params TEXT NOT NULL DEFAULT '{}',    -- JSON: weights, quotas, embedding key, ...
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE selection_items (
            selection TEXT NOT NULL REFERENCES selections(name) ON DELETE CASCADE,
            rank INTEGER NOT NULL,                -- 1 = chosen first
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            source TEXT NOT NULL DEFAULT '',
            score REAL NOT NULL,                  -- the gain it was chosen with
            uncertainty REAL,
            distance REAL,                        -- to the nearest annotated/chosen embedding
            signals TEXT NOT NULL DEFAULT '{}',   -- JSON: mean_score, covered, ...
            reasons TEXT NOT NULL DEFAULT '[]',   -- JSON list of short sentences
            PRIMARY KEY (selection, rank),
            UNIQUE (selection, image_id)
        );
        CREATE INDEX selection_items_image ON selection_items(image_id);
        """,
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
