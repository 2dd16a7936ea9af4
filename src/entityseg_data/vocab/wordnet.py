"""An offline WordNet 3.0 for the vocabulary, read by NLTK from Debian's WNDB files.

``nltk.download`` does not work offline. Debian's ``wordnet-base`` + ``wordnet-sense-index``
packages (``make setup-system``) install the WordNet 3.0 database under ``/usr/share/wordnet``;
NLTK reads it once the files sit in ``<NLTK_DATA>/corpora/wordnet/`` together with the
``lexnames`` file Debian lacks (generated here from the ``lexnames(5WN)`` list). NLTK refuses
corpus roots outside its data path and symlinks pointing outside, so the files are copied (28 MB)
into ``$ENTITYSEG_NLTK_DATA`` or ``~/.cache/entityseg-data/nltk_data`` and that folder is added
to ``nltk.data.path`` when WordNet is first loaded (never at import time).

:func:`load_wordnet` returns None (with a warning) when no database is found, and refuses a
database that has no synset for 'dog' (an empty or truncated install would otherwise silently
map nothing).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from entityseg_data.io import atomic_copy, atomic_write_text

log = logging.getLogger(__name__)

WNDB_FILES = (
    "data.noun", "data.verb", "data.adj", "data.adv",
    "index.noun", "index.verb", "index.adj", "index.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
    "index.sense",
)  # fmt: skip
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
SOURCES = (Path("/usr/share/wordnet"), Path("/usr/share/wordnet/dict"))


def lexnames_text() -> str:
    """The 45-line ``lexnames`` file (number, name, syntactic category)."""
    return "".join(f"{i:02d}\t{n}\t{_POS[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES))


def nltk_data_dir() -> Path:
    env = os.environ.get("ENTITYSEG_NLTK_DATA")
    return Path(env) if env else Path.home() / ".cache" / "entityseg-data" / "nltk_data"


def find_wndb(extra: Path | None = None) -> Path | None:
    """A folder with the WNDB files (``$WORDNET_DIR``, Debian's, or ``extra``)."""
    cands = [Path(p) for p in (os.environ.get("WORDNET_DIR"), extra) if p] + list(SOURCES)
    for c in cands:
        if (c / "data.noun").exists() and (c / "index.noun").exists():
            return c
    return None


def prepare_nltk_data(dest: Path | None = None, source: Path | None = None) -> Path | None:
    """Copy the WNDB files into ``dest/corpora/wordnet`` (once) and write ``lexnames``.

    Returns the NLTK data dir, or None when no WordNet database is installed."""
    dest = Path(dest) if dest else nltk_data_dir()
    target = dest / "corpora" / "wordnet"
    if (target / "data.noun").exists() and (target / "lexnames").exists():
        return dest
    src = source or find_wndb()
    if src is None:
        return None
    target.mkdir(parents=True, exist_ok=True)
    # every file lands whole (its own temporary name, then a rename), lexnames last: a killed
    # or concurrent preparation (two test workers, two commands) never leaves a torn file behind
    # the completeness check above
    for name in WNDB_FILES:
        if (src / name).exists():
            atomic_copy(src / name, target / name)
    atomic_write_text(target / "lexnames", lexnames_text())
    return dest


@functools.lru_cache(maxsize=4)
def load_wordnet(data_dir: str | None = None) -> Any:
    """NLTK's WordNet reader over the offline database, or None when none is installed."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.data import FileSystemPathPointer

    base = prepare_nltk_data(Path(data_dir) if data_dir else None)
    if base is None:
        log.warning(
            "no offline WordNet found (install Debian's wordnet-base and wordnet-sense-index, "
            "e.g. `make setup-system`); names are normalised by rules only"
        )
        return None
    if str(base) not in nltk.data.path:
        nltk.data.path.append(str(base))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wn = WordNetCorpusReader(FileSystemPathPointer(str(base / "corpora" / "wordnet")), None)
    if not wn.synsets("dog", "n"):
        raise RuntimeError(f"the WordNet database in {base} is empty or incomplete (no 'dog')")
    return wn


__all__ = ["find_wndb", "lexnames_text", "load_wordnet", "nltk_data_dir", "prepare_nltk_data"]
