"""DeepLabCut's ``config.yaml``, read and written with ruamel.yaml as DeepLabCut does.

:func:`read_config` returns a :class:`ProjectConfig`, a dict of plain Python
values that remembers the text it was read from. :func:`write_config` writes
every top-level key whose value is unchanged exactly as it was in that text,
with its comments and blank lines, and re-emits only changed keys: a round
trip gives the same bytes and changing one key changes only that key's lines.
Removed keys disappear (the comments before them stay), unknown keys are kept,
new DeepLabCut keys go where DeepLabCut's template puts them and other new
keys at the end. A plain mapping is written in DeepLabCut's layout (its
template's key order and section comments).

Parsing and emitting are ruamel.yaml's, in round-trip mode and YAML 1.2, as in
DeepLabCut (``yes``/``no``/``on``/``off`` stay strings, ``010`` is ten); a
written string that a YAML 1.1 reader (PyYAML) would take for something else
is quoted. The text itself is kept per top-level key, not left to ruamel's
round trip, because ruamel re-emits the whole document: it changes the
spacing of untouched lines (``key:   "x"   # c`` becomes ``key: "x"     # c``),
re-indents every block sequence to one style, drops the blank lines of files
with Windows line endings, and keeps a section's comment with the key before
it, so that replacing a list or deleting the last key of a section loses the
next section's comment and an inserted key lands after that comment.

Everything here is napari-free.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, TaggedScalar
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarbool import ScalarBoolean

from .filesafety import atomic_write_text, error_reason
from .project import ProjectError

__all__ = [
    "DLC_CONFIG_KEYS",
    "MULTI_BODYPARTS",
    "ProjectConfig",
    "config_bodyparts",
    "multianimal_config",
    "read_config",
    "write_config",
]

_SINGLE_ANIMAL_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("# Project definitions (do not edit)", ("Task", "scorer", "date", "multianimalproject", "identity")),
    ("# Project path (change when moving around)", ("project_path",)),
    ("# Default DeepLabCut engine to use for shuffle creation (either pytorch or tensorflow)", ("engine",)),
    ("# Annotation data set configuration (and individual video cropping parameters)", ("video_sets", "bodyparts")),
    (
        "# Fraction of video to start/stop when extracting frames for labeling/refinement",
        ("start", "stop", "numframes2pick"),
    ),
    ("# Plotting configuration", ("skeleton", "skeleton_color", "pcutoff", "dotsize", "alphavalue", "colormap")),
    (
        "# Training,Evaluation and Analysis configuration",
        (
            "TrainingFraction",
            "iteration",
            "default_net_type",
            "default_augmenter",
            "snapshotindex",
            "detector_snapshotindex",
            "batch_size",
            "detector_batch_size",
        ),
    ),
    (
        "# Cropping Parameters (for analysis and outlier frame detection)",
        ("cropping", "#if cropping is true for analysis, then set the values here:", "x1", "x2", "y1", "y2"),
    ),
    (
        "# Refinement configuration (parameters from annotation dataset configuration also relevant in this stage)",
        ("corner2move2", "move2corner"),
    ),
    ("# Conversion tables to fine-tune SuperAnimal weights", ("SuperAnimalConversionTables",)),
)


def _multianimal_sections() -> tuple[tuple[str, tuple[str, ...]], ...]:
    sections = []
    for comment, keys in _SINGLE_ANIMAL_SECTIONS:
        if "video_sets" in keys:
            keys = ("video_sets", "individuals", "uniquebodyparts", "multianimalbodyparts", "bodyparts")
        elif "TrainingFraction" in keys:
            i = keys.index("default_augmenter") + 1
            keys = keys[:i] + ("default_track_method",) + keys[i:]
        sections.append((comment, keys))
    return tuple(sections)


_MULTI_ANIMAL_SECTIONS = _multianimal_sections()

#: The keys of DeepLabCut's config.yaml templates (single- and multi-animal), in DeepLabCut's order.
DLC_CONFIG_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(k for _, keys in _MULTI_ANIMAL_SECTIONS for k in keys if not k.startswith("#"))
)

# --------------------------------------------------------------------------------------
# ruamel.yaml: reading and emitting
# --------------------------------------------------------------------------------------

_TAG_STR = "tag:yaml.org,2002:str"
_YAML_1_1 = VersionedResolver(version=(1, 1))


class _Representer(RoundTripRepresenter):
    """ruamel's round-trip representer, quoting strings that YAML 1.1 would read as something else."""


def _represent_str(representer: RoundTripRepresenter, value: str):
    # ruamel already quotes what YAML 1.2 would misread; PyYAML (YAML 1.1) also reads yes/no/on/off, 010, 1:20
    ambiguous = _YAML_1_1.resolve(ScalarNode, value, (True, False)) != _TAG_STR
    return representer.represent_scalar(_TAG_STR, value, style="'" if ambiguous else None)


_Representer.add_representer(str, _represent_str)


def _yaml() -> YAML:
    yaml = YAML()  # round trip, YAML 1.2
    yaml.Representer = _Representer
    yaml.width = 4096  # one line per value, however long a video path is
    return yaml


def _load(text: str, path: Path):
    try:
        return _yaml().load(text)
    except (YAMLError, ValueError) as err:
        raise ProjectError(f"not valid YAML: {err}", path) from err


def _plain(value):
    """``value`` as plain Python data: ruamel's and numpy's types, tuples and paths become dict, list, str, ..."""
    if isinstance(value, Mapping):
        return {k if isinstance(k, tuple) else _plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, TaggedScalar):  # a scalar with a tag ruamel does not know
        return _plain(value.value)
    if isinstance(value, (bool, ScalarBoolean)):
        return bool(value)
    for kind in (str, int, float):  # ruamel's ScalarString, ScalarInt and ScalarFloat keep their text
        if isinstance(value, kind):
            return kind(value)
    return value


def _dump_item(key: str, value, newline: str = "\n") -> str:
    stream = io.StringIO()
    _yaml().dump({key: _plain(value)}, stream)
    text = stream.getvalue()
    return text.replace("\n", newline) if newline != "\n" else text


# --------------------------------------------------------------------------------------
# The text of each top-level key
# --------------------------------------------------------------------------------------


@dataclass
class _Block:
    """One top-level key of a YAML file: its leading comments/blank lines and its own lines."""

    key: str
    leading: str
    content: str
    value: object


@dataclass
class _ConfigSource:
    """The text a config was read from, split into one block per top-level key."""

    blocks: list[_Block]
    trailer: str
    newline: str


def _is_trivia(line: str) -> bool:
    """A blank line or a comment starting in column 0 (belongs to the key that follows)."""
    return not line.strip() or line.startswith("#")


_LINE = re.compile(r"[^\r\n\x85\u2028\u2029]*(?:\r\n|[\r\n\x85\u2028\u2029])|[^\r\n\x85\u2028\u2029]+$")


def _split_source(text: str, doc, data: dict) -> _ConfigSource | None:
    """Split ``text`` into per-key blocks, or None when the layout is not plain block style.

    The key lines are ruamel's (:attr:`CommentedMap.lc`), which breaks lines
    where YAML does, as :data:`_LINE` does.
    """
    if not isinstance(doc, CommentedMap) or doc.fa.flow_style():
        return None
    names = list(doc)
    if not all(isinstance(k, str) for k in names) or set(names) != set(data):
        return None
    if any(doc.lc.key(k)[1] != 0 for k in names):
        return None
    lines = _LINE.findall(text)
    starts = [doc.lc.key(k)[0] for k in names] + [len(lines)]
    leading = "".join(lines[: starts[0]])
    blocks: list[_Block] = []
    for i, name in enumerate(names):
        region = lines[starts[i] : starts[i + 1]]
        end = len(region)
        while end > 1 and _is_trivia(region[end - 1]):
            end -= 1
        blocks.append(_Block(name, leading, "".join(region[:end]), deepcopy(data[name])))
        leading = "".join(region[end:])
    newline = "\r\n" if "\r\n" in text else "\n"
    return _ConfigSource(blocks, leading, newline)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


class ProjectConfig(dict):
    """A DeepLabCut ``config.yaml`` as a dict that remembers the text it came from.

    ``path`` is the file it was read from (None for a new config). Writing it
    with :func:`write_config` keeps the original lines of every unchanged key.
    """

    def __init__(self, *args, path: str | os.PathLike | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = None if path is None else Path(path)
        self._source: _ConfigSource | None = None

    @property
    def project_folder(self) -> Path | None:
        """The folder holding the config file (DeepLabCut's actual project path)."""
        return None if self.path is None else self.path.parent

    @property
    def multianimal(self) -> bool:
        return bool(self.get("multianimalproject"))

    @property
    def bodyparts(self) -> list[str]:
        """Body parts of a single-animal project; for multi-animal ones the union of both lists."""
        return config_bodyparts(self)


def config_bodyparts(config: Mapping) -> list[str]:
    """Body parts a project's CollectedData must have.

    Single-animal: ``bodyparts``. Multi-animal: ``multianimalbodyparts`` then ``uniquebodyparts``.
    """
    if config.get("multianimalproject"):
        return [*(config.get("multianimalbodyparts") or []), *(config.get("uniquebodyparts") or [])]
    bodyparts = config.get("bodyparts") or []
    if isinstance(bodyparts, str):
        raise ProjectError(f"'bodyparts' must be a list, got {bodyparts!r}", getattr(config, "path", None))
    return list(bodyparts)


#: What DeepLabCut writes as ``bodyparts`` in a multi-animal config (the parts are in the two lists).
MULTI_BODYPARTS = "MULTI!"


def multianimal_config(
    config: Mapping,
    individuals: Sequence[str],
    multianimalbodyparts: Sequence[str],
    uniquebodyparts: Sequence[str] = (),
) -> dict:
    """A copy of ``config`` made into a multi-animal project's, as DeepLabCut writes one.

    Sets ``multianimalproject: true``, ``individuals``, ``multianimalbodyparts``,
    ``uniquebodyparts``, ``bodyparts: MULTI!`` and, when missing,
    ``identity: false`` and ``default_track_method: ellipse``. A
    :class:`ProjectConfig` stays one, so that writing it keeps its other lines.
    """
    names = [str(n) for n in individuals]
    if not names or len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise ProjectError(f"individuals must be distinct, non-empty names, got {names}", getattr(config, "path", None))
    parts = [str(b) for b in multianimalbodyparts]
    unique = [str(b) for b in uniquebodyparts]
    both = parts + unique
    if len(set(both)) != len(both):
        raise ProjectError(f"body parts listed twice: {both}", getattr(config, "path", None))
    out = deepcopy(config) if isinstance(config, ProjectConfig) else dict(config)
    if isinstance(config, ProjectConfig):
        out.path, out._source = config.path, config._source
    out["multianimalproject"] = True
    if out.get("identity") is None:
        out["identity"] = False
    out["individuals"] = names
    out["uniquebodyparts"] = unique
    out["multianimalbodyparts"] = parts
    out["bodyparts"] = MULTI_BODYPARTS
    out.setdefault("default_track_method", "ellipse")
    return out


def _config_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "config.yaml" if path.is_dir() else path


def read_config(path: str | os.PathLike) -> ProjectConfig:
    """Read a DeepLabCut ``config.yaml`` (or the one inside a project folder ``path``).

    The values are exactly what the file says (``project_path`` is not rewritten,
    unlike DeepLabCut's ``read_config``; see :attr:`ProjectConfig.project_folder`).
    Raises :class:`ProjectError` when the file is missing, not YAML or not a mapping.
    """
    path = _config_file(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise ProjectError("config file not found", path) from err
    except OSError as err:
        raise ProjectError(f"cannot read the config file: {error_reason(err)}", path) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ProjectError(f"not UTF-8 text: {err}", path) from err
    doc = _load(text, path)
    if doc is None:
        raise ProjectError("the config file is empty", path)
    if not isinstance(doc, Mapping):
        raise ProjectError(f"expected a mapping of keys to values, got {type(doc).__name__}", path)
    config = ProjectConfig(_plain(doc), path=path)
    config._source = _split_source(text, doc, config)
    return config


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _same(a, b) -> bool:
    """Deep equality that also compares types (``True`` is not ``1``) and treats NaN as equal to NaN."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _template_position(key: str, present: Sequence[str]) -> int | None:
    """Where a new DeepLabCut key goes among ``present`` keys: after its closest predecessor in DLC's order."""
    if key not in DLC_CONFIG_KEYS:
        return None
    order = DLC_CONFIG_KEYS.index(key)
    before = [i for i, k in enumerate(present) if k in DLC_CONFIG_KEYS and DLC_CONFIG_KEYS.index(k) < order]
    if before:
        return before[-1] + 1
    after = [i for i, k in enumerate(present) if k in DLC_CONFIG_KEYS and DLC_CONFIG_KEYS.index(k) > order]
    return after[0] if after else None


def _render_with_source(config: Mapping, source: _ConfigSource) -> str:
    nl = source.newline
    # (key, leading text, content text) in output order
    items: list[tuple[str | None, str, str]] = []
    for block in source.blocks:
        if block.key in config:
            value = config[block.key]
            content = block.content if _same(value, block.value) else _dump_item(block.key, value, nl)
            items.append((block.key, block.leading, content))
        else:
            items.append((None, block.leading, ""))  # removed key: keep the comments before it
    for key in config:
        if any(k == key for k, _, _ in items):
            continue
        present = [k for k, _, _ in items if k is not None]
        pos = _template_position(key, present)
        entry = (key, "", _dump_item(key, config[key], nl))
        if pos is None or pos >= len(present):
            items.append(entry)
        else:
            anchor = present[pos]
            items.insert(next(i for i, item in enumerate(items) if item[0] == anchor), entry)
    parts: list[str] = []
    for piece in [text for _, leading, content in items for text in (leading, content)] + [source.trailer]:
        if piece:
            if parts and not parts[-1].endswith(("\n", "\r")):
                parts.append(nl)
            parts.append(piece)
    return "".join(parts)


def _render_fresh(config: Mapping) -> str:
    """DeepLabCut's layout: template key order with its section comments, then any other keys."""
    sections = _MULTI_ANIMAL_SECTIONS if config.get("multianimalproject") else _SINGLE_ANIMAL_SECTIONS
    chunks: list[str] = []
    written: set[str] = set()
    for comment, keys in sections:
        body = []
        for key in keys:
            if key.startswith("#"):
                if any(k in config for k in keys[keys.index(key) + 1 :]):
                    body.append(key + "\n")
            elif key in config:
                body.append(_dump_item(key, config[key]))
                written.add(key)
        if body:
            chunks.append(comment + "\n" + "".join(body))
    rest = [k for k in config if k not in written]
    text = "\n\n".join(chunks)
    if rest:
        text += ("\n\n" if text else "") + "".join(_dump_item(k, config[k]) for k in rest)
    return text


def write_config(path: str | os.PathLike, config: Mapping) -> Path:
    """Write ``config`` to ``path`` (a ``config.yaml`` or a project folder), atomically.

    A :class:`ProjectConfig` from :func:`read_config` keeps its file's text for
    every unchanged key (comments, blank lines, quoting, key order); changed
    keys are re-emitted in place, removed keys disappear, new DeepLabCut keys
    go where DeepLabCut's template puts them and other new keys at the end.
    A plain mapping is written in DeepLabCut's template layout. The text is read
    back and compared with ``config`` before anything is written.
    """
    path = _config_file(path)
    if not isinstance(config, Mapping):
        raise ProjectError(f"config must be a mapping, got {type(config).__name__}", path)
    bad = [k for k in config if not isinstance(k, str)]
    if bad:
        raise ProjectError(f"config keys must be strings, got {bad!r}", path)
    source = getattr(config, "_source", None)
    try:
        text = _render_with_source(config, source) if source is not None else _render_fresh(config)
    except YAMLError as err:
        raise ProjectError(f"cannot write the config: {err}", path) from err
    doc = _load(text, path)
    data = _plain(doc) if isinstance(doc, Mapping) else {}
    expected = {k: _plain(v) for k, v in config.items()}
    if set(data) != set(expected) or not all(_same(data[k], expected[k]) for k in expected):
        raise ProjectError("the config would not read back as written (unsupported values?)", path)
    atomic_write_text(path, text, error=ProjectError)
    if isinstance(config, ProjectConfig):
        config.path = path
        config._source = _split_source(text, doc, data)
    return path
