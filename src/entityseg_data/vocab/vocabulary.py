"""Organise the free-form stage-2 names into classes along a WordNet tree (like YOLO9000's
WordTree).

Steps:

1. :func:`canonical_name`: Unicode/case/spacing normalisation (``"Traffic-Lights "`` ->
   ``"traffic light"``), British/American spelling variants, the singular (WordNet's morphology
   with irregular plurals, rules without WordNet), a misspelling fix (the closest WordNet noun of
   similar length when the word is unknown; ratio >= 0.85), curated synonyms, then WordNet
   synonyms (the first lemma of the word's first *physical* noun synset: couch -> sofa,
   automobile -> car, kid -> child). Special names: ``unknown``, ``blurred`` and
   ``<supercategory>_other`` (kept, the supercategory normalised).
2. :class:`Vocabulary.build`: count the canonical names, map each to its synset, build the tree
   of hypernym paths (for a synset with several paths, the one adding the fewest new nodes, as
   WordTree does), and merge rare names (``min_count``) into their nearest ancestor that is
   frequent enough. A user mapping (raw or canonical name -> class [, thing|stuff]) overrides.
3. Outputs: the class list (id, name, synset, thing/stuff, counts), the merge table (raw name ->
   canonical -> synset -> class, with the reason) for review, and the tree.

Thing vs stuff: ``stuff`` when the synset lies under one of :data:`STUFF_ROOTS` (amorphous
regions: sky, water, ground, vegetation, walls, floors, substances...), else ``thing``;
``<supercategory>_other`` follows its supercategory; ``unknown``/``blurred`` are ``special``.
"""

from __future__ import annotations

import csv
import difflib
import functools
import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entityseg_data.errors import DataError

log = logging.getLogger(__name__)

SPECIAL = ("unknown", "blurred")
SPELLING = {
    "colour": "color", "grey": "gray", "tyre": "tire", "aeroplane": "airplane",
    "jewellery": "jewelry", "kerb": "curb", "storey": "story", "moustache": "mustache",
    "pyjamas": "pajamas", "plough": "plow", "mould": "mold", "armour": "armor",
    "harbour": "harbor", "neighbour": "neighbor", "theatre": "theater", "centre": "center",
    "metre": "meter", "lustre": "luster", "fibre": "fiber", "doughnut": "donut",
}  # fmt: skip
# curated synonyms (applied after the singular; WordNet's first sense is wrong for these)
SYNONYMS = {
    "bike": "bicycle", "tv": "television", "tv set": "television", "telly": "television",
    "television receiver": "television", "television set": "television",
    "cellphone": "cell phone", "mobile phone": "cell phone", "smartphone": "cell phone",
    "phone": "telephone", "tee": "t-shirt", "tshirt": "t-shirt", "tee shirt": "t-shirt",
    "jersey": "t-shirt", "fridge": "refrigerator", "sofa": "sofa", "couch": "sofa",
    "lounge": "sofa", "auto": "car", "automobile": "car", "motorbike": "motorcycle",
    "people": "person", "human": "person", "man": "person", "woman": "person",
    "kid": "child", "pavement": "sidewalk", "lorry": "truck", "trousers": "pants",
    "plant pot": "flowerpot", "flower pot": "flowerpot", "signboard": "sign",
    "spectacles": "glasses", "eyeglasses": "glasses", "taxicab": "taxi", "taxi": "taxi",
}  # fmt: skip
_PLURAL_KEEP = {"glasses", "pants", "jeans", "shorts", "scissors", "stairs", "clothes", "news"}
STUFF_ROOTS = (
    "sky.n.01", "atmosphere.n.05", "cloud.n.02", "body_of_water.n.01", "water.n.01",
    "water.n.02", "land.n.04", "ground.n.01", "earth.n.02", "soil.n.02",
    "geological_formation.n.01",
    "vegetation.n.01", "grass.n.01", "foliage.n.01", "field.n.01", "wall.n.01", "floor.n.01",
    "ceiling.n.01", "road.n.01", "sidewalk.n.01", "pavement.n.02", "substance.n.01",
    "material.n.01", "snow.n.02", "rock.n.02", "sand.n.01", "fog.n.02", "light.n.02",
)  # fmt: skip
STUFF_NAMES = {
    "sky", "water", "sea", "river", "lake", "ground", "grass", "road", "wall", "floor",
    "ceiling", "sand", "snow", "dirt", "mountain", "hill", "field", "sidewalk", "cloud",
    "vegetation", "foliage", "rock", "fog", "terrain",
}  # fmt: skip
# supercategories whose "_other" is stuff
STUFF_SUPERCATEGORIES = {"sky", "ground", "water", "terrain", "wall", "floor", "ceiling", "plant"}


def _wordnet() -> Any:
    from entityseg_data.vocab.wordnet import load_wordnet

    return load_wordnet()


def normalise_text(raw: str) -> str:
    """NFKC, lower case, '_'/'-'/'/' and repeated spaces to one space, punctuation stripped."""
    s = unicodedata.normalize("NFKC", str(raw)).lower().strip()
    s = s.replace("_", " ")
    s = re.sub(r"(?<=\w)-(?=\w)", "-", s)  # keep inner hyphens (t-shirt)
    s = re.sub(r"[\"'`.,;:!?()\[\]{}]", "", s)
    s = re.sub(r"[/\\]+", " ", s)
    return re.sub(r"\s+", " ", s).strip(" -")


def _singular_rule(word: str) -> str:
    if word in _PLURAL_KEEP or len(word) <= 3:
        return word
    irregular = {
        "people": "person",
        "men": "man",
        "women": "woman",
        "children": "child",
        "mice": "mouse",
        "feet": "foot",
        "teeth": "tooth",
        "geese": "goose",
        "leaves": "leaf",
        "knives": "knife",
        "shelves": "shelf",
        "wolves": "wolf",
    }
    if word in irregular:
        return irregular[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes", "uses", "toes", "oes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _singular(phrase: str, wn: Any) -> str:
    """Singular of the head (last) word; WordNet's morphy when available."""
    if phrase in _PLURAL_KEEP:
        return phrase
    key = phrase.replace(" ", "_")
    if wn is not None:
        if phrase in SYNONYMS or phrase in SPELLING:
            return phrase
        m = wn.morphy(key, "n")
        if m and m != key:
            return m.replace("_", " ")
        if m:
            return phrase
    words = phrase.split(" ")
    words[-1] = _singular_rule(words[-1])
    return " ".join(words)


@functools.lru_cache(maxsize=2)
def _noun_lemmas(wn: Any) -> dict[tuple[str, int], list[str]]:
    """WordNet noun lemmas by (first letter, length), for the misspelling search."""
    idx: dict[tuple[str, int], list[str]] = {}
    for name in wn.all_lemma_names("n"):
        if name[:1].isalpha():
            idx.setdefault((name[0], len(name)), []).append(name)
    return idx


def _correct_spelling(phrase: str, wn: Any) -> str:
    """The closest WordNet noun of similar length for an unknown word (>= 5 letters)."""
    key = phrase.replace(" ", "_")
    if wn is None or len(key) < 5 or wn.synsets(key, "n"):
        return phrase
    # an adjacent transposition first (chiar -> chair): difflib ranks those below substitutions
    for i in range(len(key) - 1):
        swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
        if wn.synsets(swapped, "n"):
            return swapped.replace("_", " ")
    idx = _noun_lemmas(wn)
    cands: list[str] = []
    for n in range(len(key) - 2, len(key) + 3):
        cands.extend(idx.get((key[0], n), ()))
    match = difflib.get_close_matches(key, cands, n=1, cutoff=0.85)
    return match[0].replace("_", " ") if match else phrase


def physical_synset(name: str, wn: Any) -> Any:
    """The first noun synset of ``name`` under physical_entity.n.01 (else the first one).

    Exception: when that first physical sense is a person or a body part (slang senses such as
    'mug' = chump.n.01 or countenance.n.03) and ``name`` heads another physical synset that is
    neither, that one is taken ('mug' the drinking vessel, mug.n.04)."""
    if wn is None:
        return None
    key = name.replace(" ", "_")
    synsets = wn.synsets(key, "n")
    if not synsets:
        return None
    phys = wn.synset("physical_entity.n.01")
    animate = (wn.synset("person.n.01"), wn.synset("body_part.n.01"))

    def under(s: Any, roots: Any) -> bool:
        return any(r in path for path in s.hypernym_paths() for r in roots)

    physical = [s for s in synsets if under(s, (phys,))]
    if not physical:
        return synsets[0]
    first = physical[0]
    if under(first, animate):
        for s in physical[1:]:
            if s.lemmas()[0].name().lower() == key.lower() and not under(s, animate):
                return s
    return first


def canonical_name(raw: str) -> str:
    """The case/plural/spelling/synonym-normalised form of a free-form name (see the module
    docstring); '' for an empty name. Uses the offline WordNet when installed."""
    return _canonical(raw, _wordnet())


def _canonical(raw: str, wn: Any) -> str:
    if raw is None:
        return ""
    s = normalise_text(raw)
    if not s:
        return ""
    if s in SPECIAL:
        return s
    m = re.fullmatch(r"(.+?)[ _]others?", s)
    if m:
        return f"{_canonical(m.group(1), wn).replace(' ', '_')}_other"
    words = [SPELLING.get(w, w) for w in s.split(" ")]
    s = " ".join(words)
    s = SYNONYMS.get(s, s)
    s = _singular(s, wn)
    s = " ".join(SPELLING.get(w, w) for w in s.split(" "))
    s = SYNONYMS.get(s, s)
    s = _correct_spelling(s, wn)
    s = _singular(s, wn)
    if s in SYNONYMS:
        return SYNONYMS[s]
    if s in SYNONYMS.values():
        return s
    syn = physical_synset(s, wn)
    if syn is not None:
        lemma = syn.lemmas()[0].name().replace("_", " ").lower()
        return SYNONYMS.get(lemma, lemma)
    return s


@dataclass(frozen=True)
class VocabClass:
    id: int
    name: str
    synset: str | None
    kind: str  # thing | stuff | special
    count: int
    n_names: int

    @property
    def isthing(self) -> bool:
        return self.kind == "thing"


def load_mapping(path: str | Path) -> dict[str, tuple[str, str | None]]:
    """A user mapping: CSV ``raw,class[,kind]`` (header optional) or JSON
    ``{raw: class | {"class": ..., "kind": ...}}``; keys are matched after normalisation."""
    path = Path(path)
    out: dict[str, tuple[str, str | None]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the vocabulary mapping: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON: {exc}") from None
        for k, v in data.items():
            if isinstance(v, Mapping):
                out[normalise_text(k)] = (str(v["class"]), v.get("kind"))
            else:
                out[normalise_text(k)] = (str(v), None)
        return out
    for i, row in enumerate(csv.reader(text.splitlines())):
        if not row or row[0].startswith("#") or (i == 0 and row[0].strip().lower() == "raw"):
            continue
        if len(row) < 2:
            raise DataError(f"{path}:{i + 1}: expected 'raw,class[,kind]', got {row}")
        kind = row[2].strip() if len(row) > 2 and row[2].strip() else None
        if kind not in (None, "thing", "stuff", "special"):
            raise DataError(f"{path}:{i + 1}: kind must be thing, stuff or special, got {kind}")
        out[normalise_text(row[0])] = (row[1].strip(), kind)
    return out


class Vocabulary:
    """Classes built from free-form names.

    Args:
        mapping: user overrides ``{raw or canonical name: (class, kind or None)}`` (see
            :func:`load_mapping`); they win over everything else.
        min_count: names seen fewer times are merged into their nearest frequent-enough
            ancestor in the tree (1 = no merging), never into a node shallower than
            ``min_depth`` (so nothing becomes 'artifact' or 'entity'; such names stay as they are).
        use_wordnet: False to use the rules only.
    """

    def __init__(
        self,
        *,
        mapping: Mapping[str, tuple[str, str | None]] | None = None,
        min_count: int = 1,
        min_depth: int = 6,
        use_wordnet: bool = True,
    ) -> None:
        self.min_depth = int(min_depth)
        self.mapping = {normalise_text(k): v for k, v in (mapping or {}).items()}
        self.min_count = int(min_count)
        self.wn = _wordnet() if use_wordnet else None
        self.raw_counts: Counter = Counter()
        self.table: dict[str, dict[str, Any]] = {}
        self.classes: list[VocabClass] = []
        self.parent: dict[str, str | None] = {}
        self._by_name: dict[str, VocabClass] = {}

    # ------------------------------------------------------------------ helpers
    def _kind_of(self, cname: str, synset: Any) -> str:
        if cname in SPECIAL:
            return "special"
        if cname.endswith("_other"):
            return "stuff" if cname[: -len("_other")] in STUFF_SUPERCATEGORIES else "thing"
        if cname in STUFF_NAMES:
            return "stuff"
        if synset is not None and self.wn is not None:
            roots = set()
            for r in STUFF_ROOTS:
                try:
                    roots.add(self.wn.synset(r))
                except Exception:  # a root name missing in this WordNet version
                    continue
            for path in synset.hypernym_paths():
                if roots.intersection(path):
                    return "stuff"
        return "thing"

    def _resolve(self, raw: str) -> dict[str, Any]:
        norm = normalise_text(raw)
        canon = _canonical(raw, self.wn)
        for key in (norm, canon):
            if key in self.mapping:
                cls, kind = self.mapping[key]
                return {
                    "raw": raw,
                    "canonical": canon,
                    "synset": None,
                    "class": cls,
                    "kind": kind,
                    "source": "override",
                }
        if not canon or canon in SPECIAL or canon.endswith("_other"):
            name = canon or "unknown"
            return {
                "raw": raw,
                "canonical": name,
                "synset": None,
                "class": name,
                "kind": None,
                "source": "special",
            }
        syn = physical_synset(canon, self.wn)
        return {
            "raw": raw,
            "canonical": canon,
            "synset": syn.name() if syn else None,
            "class": canon,
            "kind": None,
            "source": "wordnet" if syn else "unmapped",
        }

    def _depth(self, node: str) -> int:
        d = 0
        up = self.parent.get(node)
        while up is not None:
            up = self.parent.get(up)
            d += 1
        return d

    def _best_path(self, synset: Any, nodes: set[str]) -> list[Any]:
        paths = synset.hypernym_paths()
        return min(paths, key=lambda p: (sum(1 for s in p if s.name() not in nodes), len(p)))

    # ------------------------------------------------------------------ build
    def build(self, names: Iterable[str | None]) -> Vocabulary:
        """Count ``names`` (raw, as typed), map, build the tree and the classes; returns self."""
        for n in names:
            self.raw_counts[n if n else "unknown"] += 1
        self.table = {raw: self._resolve(raw) for raw in self.raw_counts}
        for row in self.table.values():
            if row["kind"] is None:
                syn = self.wn.synset(row["synset"]) if (row["synset"] and self.wn) else None
                row["kind"] = self._kind_of(row["class"], syn)
        # tree over the synsets (fewest-new-nodes path; single-path synsets first, as WordTree)
        synsets = {}
        for row in self.table.values():
            if row["synset"] and self.wn is not None:
                synsets[row["synset"]] = self.wn.synset(row["synset"])
        counts: Counter = Counter()
        for raw, row in self.table.items():
            counts[row["class"]] += self.raw_counts[raw]
        self.parent = {}
        order = sorted(synsets.values(), key=lambda s: (len(s.hypernym_paths()), s.name()))
        for s in order:
            path = self._best_path(s, set(self.parent))
            prev = None
            for node in path:
                self.parent.setdefault(node.name(), prev)
                prev = node.name()
        # aggregated counts per tree node
        node_count: Counter = Counter()
        class_synset = {}
        for row in self.table.values():
            if row["synset"] and row["source"] == "wordnet":
                class_synset[row["class"]] = row["synset"]
        for cname, sname in class_synset.items():
            node = sname
            while node is not None:
                node_count[node] += counts[cname]
                node = self.parent.get(node)
        # merge rare classes into the nearest frequent-enough ancestor
        if self.min_count > 1:
            for row in self.table.values():
                if row["source"] != "wordnet" or counts[row["class"]] >= self.min_count:
                    continue
                # the class's own node first: hyponyms counted into it can keep it
                node = row["synset"]
                while node is not None and node_count[node] < self.min_count:
                    node = self.parent.get(node)
                if node is None or node == row["synset"] or self._depth(node) < self.min_depth:
                    continue
                if node is not None and self.wn is not None:
                    target = self.wn.synset(node).lemmas()[0].name().replace("_", " ").lower()
                    row.update({"class": target, "synset": node, "source": "merged"})
        # classes
        final_counts: Counter = Counter()
        info: dict[str, dict[str, Any]] = {}
        for raw, row in self.table.items():
            k = self.raw_counts[raw]
            final_counts[row["class"]] += k
            i = info.setdefault(row["class"], {"synset": None, "kinds": Counter(), "names": set()})
            i["names"].add(row["canonical"])
            if row["synset"] and row["source"] in ("wordnet", "merged"):
                i["synset"] = row["synset"]
            # an override's kind decides; otherwise the majority of the members' kinds
            i["kinds"][row["kind"]] += k * (10**9 if row["source"] == "override" else 1)
        # 'unknown' always exists, so every name (also an empty one) has a category
        info.setdefault(
            "unknown", {"synset": None, "kinds": Counter({"special": 1}), "names": set()}
        )
        rows = []
        for cname, i in info.items():
            kind = i["kinds"].most_common(1)[0][0]
            rows.append((cname, i["synset"], kind, final_counts[cname], len(i["names"])))
        rank = {"thing": 0, "stuff": 1, "special": 2}
        rows.sort(key=lambda r: (rank.get(r[2], 3), r[0]))
        self.classes = [
            VocabClass(id=k + 1, name=r[0], synset=r[1], kind=r[2], count=r[3], n_names=r[4])
            for k, r in enumerate(rows)
        ]
        self._by_name = {c.name: c for c in self.classes}
        return self

    # ------------------------------------------------------------------ queries
    def class_of(self, name: str | None) -> VocabClass:
        raw = name if name else "unknown"
        row = self.table.get(raw) or self._resolve(raw)
        cls = self._by_name.get(row["class"]) or self._by_name.get(row["canonical"])
        if cls is None and row.get("synset") and self.wn is not None:
            # a name outside the build: the nearest class among its hypernyms
            by_synset = {c.synset: c for c in self.classes if c.synset}
            for path in self.wn.synset(row["synset"]).hypernym_paths():
                for node in reversed(path):
                    if node.name() in by_synset:
                        cls = by_synset[node.name()]
                        break
                if cls is not None:
                    break
        if cls is None:
            cls = self._by_name.get("unknown")
        if cls is None:
            raise DataError(f"name {name!r} has no class in this vocabulary (rebuild it)")
        return cls

    def category_of(self, name: str | None) -> tuple[int, str]:
        """(category_id, class_name) of a raw name (names outside the build are resolved the
        same way; an empty name is 'unknown')."""
        c = self.class_of(name)
        return c.id, c.name

    def merge_table(self) -> list[dict[str, Any]]:
        """One row per raw name: raw, count, canonical, synset, class, category_id, source."""
        out = []
        for raw, row in sorted(self.table.items(), key=lambda kv: (-self.raw_counts[kv[0]], kv[0])):
            out.append(
                {
                    **row,
                    "count": self.raw_counts[raw],
                    "category_id": self._by_name[row["class"]].id,
                }
            )
        return out

    def class_list(self) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "name": c.name,
                "synset": c.synset,
                "kind": c.kind,
                "isthing": int(c.isthing),
                "count": c.count,
                "n_names": c.n_names,
            }
            for c in self.classes
        ]

    def tree(self) -> dict[str, Any]:
        """``{"parent": {synset: parent}, "classes": {class: synset}}``."""
        return {
            "parent": dict(sorted(self.parent.items())),
            "classes": {c.name: c.synset for c in self.classes if c.synset},
        }

    def summary(self) -> dict[str, int]:
        kinds = Counter(c.kind for c in self.classes)
        return {
            "names": len(self.table),
            "classes": len(self.classes),
            "thing": kinds["thing"],
            "stuff": kinds["stuff"],
            "special": kinds["special"],
        }

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``classes.csv``, ``merge_table.csv`` and ``tree.json`` atomically."""
        from entityseg_data.io import atomic_open, atomic_write_json

        folder = Path(folder)
        paths = {
            "classes": folder / "classes.csv",
            "merge_table": folder / "merge_table.csv",
            "tree": folder / "tree.json",
        }
        for key, rows in (("classes", self.class_list()), ("merge_table", self.merge_table())):
            with atomic_open(paths[key], "w", encoding="utf-8", newline="") as fh:
                cols = list(rows[0]) if rows else ["name"]
                writer = csv.DictWriter(fh, fieldnames=cols)
                writer.writeheader()
                writer.writerows(rows)
        atomic_write_json(paths["tree"], self.tree(), indent=1)
        return paths


__all__ = [
    "SPECIAL",
    "VocabClass",
    "Vocabulary",
    "canonical_name",
    "load_mapping",
    "normalise_text",
    "physical_synset",
]
