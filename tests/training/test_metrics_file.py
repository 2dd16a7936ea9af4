"""metrics.jsonl on resume: the lines after the resumed checkpoint are dropped by rewriting the
file atomically, so a failure (disk full, file size limit) or a kill during that rewrite keeps
the earlier metrics (was: ``Path.write_text`` truncated the file first)."""

from __future__ import annotations

import json
import resource

import pytest

from entityseg_data.model.training.trainer import MetricsWriter


def _metrics(path, n):
    path.write_text("".join(json.dumps({"iter": i, "loss": 1.0 / i}) + "\n" for i in range(1, n)))


def test_resume_keeps_the_lines_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _metrics(path, 11)
    w = MetricsWriter(path=path, resume_from=4, tensorboard=False)
    w.write({"iter": 5, "loss": 0.5})
    w.close()
    assert [json.loads(x)["iter"] for x in path.read_text().splitlines()] == [1, 2, 3, 4, 5]


def test_a_failed_rewrite_keeps_the_old_metrics(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _metrics(path, 200)
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # writes past 100 bytes fail with EFBIG (Python ignores SIGXFSZ): the kept lines need more
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
    try:
        with pytest.raises(OSError):
            MetricsWriter(path=path, resume_from=150, tensorboard=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary file left
