"""DeepLabCut project files: ``config.yaml`` and ``CollectedData``, read and written as DeepLabCut does.

A DeepLabCut project folder holds::

    <Task>-<scorer>-<YYYY-MM-DD>/
        config.yaml
        videos/
        labeled-data/<video stem>/imgNNNN.png
        labeled-data/<video stem>/CollectedData_<scorer>.h5   (key "df_with_missing")
        labeled-data/<video stem>/CollectedData_<scorer>.csv
        training-datasets/
        dlc-models/

**config.yaml.** :func:`read_config` returns a :class:`ProjectConfig` (a dict)
that remembers the text it was read from. :func:`write_config` writes every
top-level key whose value is unchanged exactly as it was in that text, with its
comments and blank lines, and re-emits only changed keys: a round trip gives the
same bytes and changing one key changes only that key's lines. Unknown keys are
kept. A plain mapping is written in DeepLabCut's layout (its template's key
order and section comments). Scalars are read with YAML 1.2 rules, as
DeepLabCut's ruamel.yaml does (``yes``/``no``/``on``/``off`` stay strings).

**CollectedData.** A DataFrame with float64 values and a column MultiIndex
``(scorer, bodyparts, coords)`` (``(scorer, individuals, bodyparts, coords)``
for multi-animal projects), coords ``x`` and ``y``, NaN where a body part is not
labeled. The row index is either the legacy string index
(``labeled-data/m4s1/img0000.png``) or, from DeepLabCut 2.2 on, a MultiIndex
(``('labeled-data', 'm4s1', 'img0000.png')``). Both are read, and a write keeps
the style the DataFrame has. The HDF5 file is written like DeepLabCut's own
writers (``df.to_hdf(path, key="df_with_missing", mode="w")``, pandas' *fixed*
format, the only one that stores a row MultiIndex together with column
MultiIndex), the CSV with ``df.to_csv(path)``; floats come out in Python's
shortest round-trip form, exactly as DeepLabCut's files are.

**Writes are atomic.** Each file is written to a temporary file in the same
folder, flushed and fsynced, then moved over the target with :func:`os.replace`.
A folder that cannot be written raises :class:`ProjectError` and leaves the old
files untouched.

Everything here is napari-free.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

__all__ = [
    "COLLECTED_KEY",
    "COLUMN_NAMES",
    "COLUMN_NAMES_MULTIANIMAL",
    "DLC_CONFIG_KEYS",
    "ProjectConfig",
    "ProjectError",
    "arrays_to_collected",
    "atomic_write_bytes",
    "atomic_write_text",
    "ensure_writable_folder",
    "check_bodyparts",
    "check_image_sizes",
    "check_labels",
    "collected_path",
    "collected_to_arrays",
    "config_bodyparts",
    "create_project",
    "image_sizes",
    "index_style",
    "merge_collected",
    "missing_images",
    "read_collected",
    "read_config",
    "to_multi_index",
    "to_string_index",
    "write_collected",
    "write_config",
]

#: HDF5 key of CollectedData and prediction files.
COLLECTED_KEY = "df_with_missing"
#: Column level names of single-animal CollectedData.
COLUMN_NAMES = ["scorer", "bodyparts", "coords"]
#: Column level names of multi-animal CollectedData.
COLUMN_NAMES_MULTIANIMAL = ["scorer", "individuals", "bodyparts", "coords"]
#: Image file extensions looked at in ``labeled-data`` folders.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

IndexStyle = Literal["string", "multi"]


class ProjectError(Exception):
    """A project file is missing, malformed, inconsistent or cannot be written.

    The message names the file or folder (when there is one) and the reason.
    """

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; not every platform can open a folder, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def _new_temp_file(target: Path) -> Path:
    """Create an empty, uniquely named temporary file beside ``target``."""
    folder = target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        if not folder.exists():
            raise FileNotFoundError(2, "the folder does not exist")
        if not folder.is_dir():
            raise NotADirectoryError(20, "the parent is not a folder")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        os.close(fd)
    except OSError as err:
        raise ProjectError(f"cannot write {target.name} here: {_reason(err)}", folder) from err
    if target.exists():
        try:
            shutil.copymode(target, tmp)
        except OSError:
            pass
    return tmp


def _atomic_write_files(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write several files so that each is replaced whole or not at all.

    Every writer gets a temporary path in its target's folder and writes the
    complete file there, which is then fsynced. Only when all writers
    succeeded are the temporary files moved over their targets, in the given
    order, each with one :func:`os.replace`. On a failure while writing, every
    target is left as it was; the temporary files are always removed. (Should
    a later rename fail after an earlier one succeeded, the earlier target is
    already the new, complete file.)
    """
    temps: dict[Path, Path] = {}
    try:
        for target, write in writers.items():
            temps[target] = tmp = _new_temp_file(target)
            try:
                write(tmp)
                _fsync_path(tmp)
            except ProjectError:
                raise
            except OSError as err:
                raise ProjectError(f"cannot write: {_reason(err)}", target) from err
        for target, tmp in temps.items():
            try:
                os.replace(tmp, target)
            except OSError as err:
                raise ProjectError(f"cannot replace the file: {_reason(err)}", target) from err
            _fsync_dir(target.parent)
    finally:
        for tmp in temps.values():
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, :func:`os.replace`)."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()

    _atomic_write_files({path: write})
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; newlines are written as given."""
    return atomic_write_bytes(path, text.encode(encoding))


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it (OSError otherwise).

    Long jobs call this before they start, so that an output folder they
    cannot use is reported before any work is done.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".posekit-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    return folder


# --------------------------------------------------------------------------------------
# config.yaml
# --------------------------------------------------------------------------------------

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
            "TrainingFraction", "iteration", "default_net_type", "default_augmenter", "snapshotindex",
            "detector_snapshotindex", "batch_size", "detector_batch_size",
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

_TAG_NULL = "tag:yaml.org,2002:null"
_TAG_BOOL = "tag:yaml.org,2002:bool"
_TAG_INT = "tag:yaml.org,2002:int"
_TAG_FLOAT = "tag:yaml.org,2002:float"
_TAG_STR = "tag:yaml.org,2002:str"


class _ConfigLoader(yaml.SafeLoader):
    """Safe loader resolving plain scalars with YAML 1.2 rules, as ruamel.yaml (DeepLabCut) does."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG_BOOL, _TAG_INT, _TAG_FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(_TAG_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_ConfigLoader.add_implicit_resolver(
    _TAG_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_ConfigLoader.add_implicit_resolver(
    _TAG_FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = loader.construct_scalar(node)
    if value.startswith(("0o", "0x")):
        return int(value, 0)
    return int(value)  # decimal, leading zeros allowed (YAML 1.2)


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> list:
    # very old DeepLabCut configs stored tuples with a Python tag
    return loader.construct_sequence(node, deep=True)


_ConfigLoader.add_constructor(_TAG_INT, _construct_int)
_ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


def _implicit_tag(value: str) -> str:
    """The tag a plain scalar ``value`` resolves to when read back by :class:`_ConfigLoader`."""
    candidates = _ConfigLoader.yaml_implicit_resolvers.get(value[:1] if value else "", [])
    for tag, regexp in [*candidates, *_ConfigLoader.yaml_implicit_resolvers.get(None, [])]:
        if regexp.match(value):
            return tag
    return _TAG_STR


class _ConfigDumper(yaml.SafeDumper):
    """Block-style dumper writing what ruamel.yaml writes for DeepLabCut's config values."""


def _represent_none(dumper: yaml.SafeDumper, _value) -> yaml.ScalarNode:
    return dumper.represent_scalar(_TAG_NULL, "")  # "key:" with no value, as DeepLabCut's files have


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # quote strings that YAML 1.2 would read as something else (PyYAML only checks YAML 1.1)
    style = "'" if _implicit_tag(value) != _TAG_STR else None
    return dumper.represent_scalar(_TAG_STR, value, style=style)


_ConfigDumper.add_representer(type(None), _represent_none)
_ConfigDumper.add_representer(str, _represent_str)
_ConfigDumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))
_ConfigDumper.add_multi_representer(Path, lambda d, v: _represent_str(d, str(v)))
_ConfigDumper.add_multi_representer(np.generic, lambda d, v: d.represent_data(v.item()))
_ConfigDumper.add_multi_representer(np.ndarray, lambda d, v: d.represent_list(v.tolist()))
_ConfigDumper.add_multi_representer(dict, lambda d, v: d.represent_dict(dict(v)))


def _dump_item(key: str, value, newline: str = "\n") -> str:
    text = yaml.dump(
        {key: value}, Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return text.replace("\n", newline) if newline != "\n" else text


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
    stripped = line.strip()
    return not stripped or line.startswith("#")


_LINE = re.compile(r"[^\r\n\x85\u2028\u2029]*(?:\r\n|[\r\n\x85\u2028\u2029])|[^\r\n\x85\u2028\u2029]+$")


def _yaml_lines(text: str) -> list[str]:
    """Lines with their endings, broken where YAML (and PyYAML's line numbers) break them."""
    return _LINE.findall(text)


def _parse_yaml(text: str, path: Path) -> tuple[object, yaml.Node | None]:
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise ProjectError(f"not valid YAML: {err}", path) from err
    finally:
        loader.dispose()
    return data, node


def _split_source(text: str, data: dict, node: yaml.Node) -> _ConfigSource | None:
    """Split ``text`` into per-key blocks, or None when the layout is not plain block style."""
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        return None
    keys = [k for k, _ in node.value]
    if any(not isinstance(k, yaml.ScalarNode) or k.start_mark.column != 0 for k in keys):
        return None
    names = [k.value for k in keys]
    if len(set(names)) != len(names) or set(names) != set(data):
        return None  # duplicate or non-string keys: no line-exact rewrite
    lines = _yaml_lines(text)
    starts = [k.start_mark.line for k in keys] + [len(lines)]
    leading = "".join(lines[: starts[0]])
    blocks: list[_Block] = []
    for i, name in enumerate(names):
        region = lines[starts[i] : starts[i + 1]]
        end = len(region)
        while end > 1 and _is_trivia(region[end - 1]):
            end -= 1
        blocks.append(_Block(name, leading, "".join(region[:end]), copy.deepcopy(data[name])))
        leading = "".join(region[end:])
    newline = "\r\n" if "\r\n" in text else "\n"
    return _ConfigSource(blocks, leading, newline)


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
        raise ProjectError(f"cannot read the config file: {_reason(err)}", path) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ProjectError(f"not UTF-8 text: {err}", path) from err
    data, node = _parse_yaml(text, path)
    if data is None:
        raise ProjectError("the config file is empty", path)
    if not isinstance(data, dict):
        raise ProjectError(f"expected a mapping of keys to values, got {type(data).__name__}", path)
    config = ProjectConfig(data, path=path)
    config._source = _split_source(text, data, node)
    return config


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
    for _, leading, content in items:
        for piece in (leading, content):
            if piece:
                if parts and not parts[-1].endswith(("\n", "\r")):
                    parts.append(nl)
                parts.append(piece)
    if source.trailer:
        if parts and not parts[-1].endswith(("\n", "\r")):
            parts.append(nl)
        parts.append(source.trailer)
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
    except yaml.YAMLError as err:
        raise ProjectError(f"cannot write the config: {err}", path) from err
    data, node = _parse_yaml(text, path)
    expected = {k: _plain(v) for k, v in config.items()}
    data_map = data if isinstance(data, dict) else {}
    if set(data_map) != set(expected) or not all(_same(data_map[k], expected[k]) for k in expected):
        raise ProjectError("the config would not read back as written (unsupported values?)", path)
    atomic_write_text(path, text)
    if isinstance(config, ProjectConfig):
        config.path = path
        config._source = _split_source(text, data, node) if isinstance(data, dict) else None
    return path


def _plain(value):
    """``value`` as YAML reads it back: tuples become lists, numpy scalars Python scalars, paths strings."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------------------
# New project
# --------------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProjectError(f"{kind} must be a non-empty string, got {value!r}")
    if any(c in value for c in "/\\") or value in (".", ".."):
        raise ProjectError(f"{kind} {value!r} cannot contain path separators")
    return value


def create_project(
    folder: str | os.PathLike,
    task: str,
    scorer: str,
    videos: Iterable[str | os.PathLike],
    bodyparts: Sequence[str],
    skeleton: Iterable[Sequence[str]] = (),
    copy_videos: bool = False,
    *,
    date: _dt.date | None = None,
) -> Path:
    """Create a single-animal DeepLabCut project in ``folder``; returns the path of its ``config.yaml``.

    Makes ``<task>-<scorer>-<YYYY-MM-DD>/`` with ``config.yaml``, ``videos/``,
    ``labeled-data/<video stem>/`` per video, ``training-datasets/`` and
    ``dlc-models/``, as ``deeplabcut.create_new_project`` does. Videos are
    symlinked into ``videos/`` (copied when ``copy_videos`` is true or a link
    cannot be made); ``video_sets`` is keyed by the resolved video path with
    ``crop: '0, W, 0, H'``. The other values are DeepLabCut's defaults. Nothing
    is created when an argument is invalid, a video cannot be read or the
    project folder exists already (:class:`ProjectError`).
    """
    from napari_posekit.core.video import VideoError, read_metadata

    _check_name("task", task)
    _check_name("scorer", scorer)
    bodyparts = list(bodyparts)
    if not bodyparts or not all(isinstance(b, str) and b for b in bodyparts):
        raise ProjectError(f"bodyparts must be a non-empty list of names, got {bodyparts!r}")
    duplicates = sorted({b for b in bodyparts if bodyparts.count(b) > 1})
    if duplicates:
        raise ProjectError(f"body parts listed twice: {duplicates}")
    skeleton = [list(edge) for edge in skeleton]
    for edge in skeleton:
        if len(edge) != 2 or any(b not in bodyparts for b in edge):
            raise ProjectError(f"skeleton edge {edge} must join two of the body parts {bodyparts}")

    videos = [Path(v) for v in videos]
    if not videos:
        raise ProjectError("a project needs at least one video")
    sizes = []
    for video in videos:
        try:
            meta = read_metadata(video)
        except VideoError as err:
            raise ProjectError(f"cannot add the video: {err.reason}", video) from err
        sizes.append((meta.width, meta.height))
    names = [v.name for v in videos]
    stems = [v.stem for v in videos]
    clashes = sorted({n for n in names if names.count(n) > 1} | {s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ProjectError(f"two videos share a name (their labeled-data folders would clash): {clashes}")

    date = date or _dt.date.today()
    base = Path(folder).resolve()
    if not base.is_dir():
        raise ProjectError("the folder for the new project does not exist", base)
    project = base / f"{task}-{scorer}-{date.strftime('%Y-%m-%d')}"
    if project.exists():
        raise ProjectError("a project with this name exists already", project)

    try:
        for sub in ("videos", "labeled-data", "training-datasets", "dlc-models"):
            (project / sub).mkdir(parents=True)
        video_sets = {}
        for video, (width, height) in zip(videos, sizes):
            (project / "labeled-data" / video.stem).mkdir()
            dest = project / "videos" / video.name
            if copy_videos:
                shutil.copy2(video, dest)
            else:
                try:
                    os.symlink(video.resolve(), dest)
                except OSError:
                    shutil.copy2(video, dest)
            video_sets[str(dest.resolve())] = {"crop": f"0, {width}, 0, {height}"}
        config = {
            "Task": task,
            "scorer": scorer,
            "date": f"{_MONTHS[date.month - 1]}{date.day}",
            "multianimalproject": False,
            "identity": None,
            "project_path": str(project),
            "engine": "pytorch",
            "video_sets": video_sets,
            "bodyparts": bodyparts,
            "start": 0,
            "stop": 1,
            "numframes2pick": 20,
            "skeleton": skeleton,
            "skeleton_color": "black",
            "pcutoff": 0.6,
            "dotsize": 12,
            "alphavalue": 0.7,
            "colormap": "rainbow",
            "TrainingFraction": [0.95],
            "iteration": 0,
            "default_net_type": "resnet_50",
            "default_augmenter": "default",
            "snapshotindex": -1,
            "detector_snapshotindex": -1,
            "batch_size": 8,
            "detector_batch_size": 1,
            "cropping": False,
            "x1": 0,
            "x2": 640,
            "y1": 277,
            "y2": 624,
            "corner2move2": [50, 50],
            "move2corner": True,
            "SuperAnimalConversionTables": None,
        }
        return write_config(project / "config.yaml", config)
    except BaseException as err:
        shutil.rmtree(project, ignore_errors=True)
        if isinstance(err, OSError):
            raise ProjectError(f"cannot create the project: {_reason(err)}", project) from err
        raise


# --------------------------------------------------------------------------------------
# CollectedData: reading and writing
# --------------------------------------------------------------------------------------


def collected_path(folder_or_path: str | os.PathLike, scorer: str | None = None, suffix: str = ".h5") -> Path:
    """``<folder>/CollectedData_<scorer><suffix>``, or ``path`` with ``suffix`` when a file path is given."""
    p = Path(folder_or_path)
    if p.suffix.lower() in (".h5", ".csv"):
        return p.with_suffix(suffix)
    if not scorer:
        raise ProjectError("a scorer is needed to name the CollectedData file", p)
    return p / f"CollectedData_{scorer}{suffix}"


def _find_collected(folder: Path) -> Path:
    found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    if not found:
        raise ProjectError("no CollectedData_<scorer>.h5 or .csv in this folder", folder)
    if len(found) > 1:
        raise ProjectError(f"several CollectedData files, pass one of them: {[f.name for f in found]}", folder)
    return found[0]


def _read_hdf(path: Path) -> pd.DataFrame:
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = store.keys()
            if "/" + COLLECTED_KEY in keys:
                key = COLLECTED_KEY
            elif len(keys) == 1:
                key = keys[0]  # e.g. napari-deeplabcut writes key "keypoints"
            else:
                raise ProjectError(f"no '{COLLECTED_KEY}' table in the HDF5 file (keys: {keys})", path)
            df = store.get(key)
    except ProjectError:
        raise
    except Exception as err:
        raise ProjectError(f"cannot read the HDF5 file: {_reason(err)}", path) from err
    if not isinstance(df, pd.DataFrame):
        raise ProjectError(f"'{key}' is a {type(df).__name__}, not a DataFrame", path)
    return df


def _csv_header(path: Path) -> tuple[int, list[str]]:
    """``(number of index columns, column level names)`` from a DeepLabCut CSV's header rows."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for _, row in zip(range(5), csv.reader(f))]
    except OSError as err:
        raise ProjectError(f"cannot read the CSV file: {_reason(err)}", path) from err
    except (csv.Error, UnicodeDecodeError) as err:
        raise ProjectError(f"not a CSV text file: {err}", path) from err
    if not rows or not rows[0] or rows[0][0] != "scorer":
        first = rows[0][0] if rows and rows[0] else ""
        raise ProjectError(f"malformed header: the first row must start with 'scorer', not {first!r}", path)
    n_index = 1
    while n_index < len(rows[0]) and rows[0][n_index] == "":
        n_index += 1
    names = COLUMN_NAMES_MULTIANIMAL if len(rows) > 1 and rows[1] and rows[1][0] == "individuals" else COLUMN_NAMES
    for level, name in enumerate(names):
        got = rows[level][0] if level < len(rows) and rows[level] else None
        if got != name:
            raise ProjectError(
                f"malformed header: expected {len(names)} header rows {'/'.join(names)}, "
                f"but row {level + 1} starts with {got!r}",
                path,
            )
    return n_index, names


def _read_csv(path: Path) -> pd.DataFrame:
    n_index, names = _csv_header(path)
    kwargs = {}
    if int(pd.__version__.split(".")[0]) < 3:
        kwargs["float_precision"] = "round_trip"  # pandas 3 parses floats exactly by default
    try:
        df = pd.read_csv(
            path,
            header=list(range(len(names))),
            index_col=list(range(n_index)) if n_index > 1 else 0,
            **kwargs,
        )
    except Exception as err:
        raise ProjectError(f"cannot parse the CSV file: {_reason(err)}", path) from err
    if isinstance(df.index, pd.MultiIndex):
        # folder names such as "1234" must stay strings (as DeepLabCut's guarantee_multiindex_rows does)
        df.index = pd.MultiIndex.from_arrays(
            [df.index.get_level_values(i).astype(str) for i in range(df.index.nlevels)], names=df.index.names
        )
    return df


def _validate_collected(df: pd.DataFrame, path=None, likelihood: bool = False) -> pd.DataFrame:
    """Check the column layout of CollectedData; returns it with float64 values and DLC level names."""
    cols = df.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        raise ProjectError(
            "columns must have 3 levels scorer/bodyparts/coords (or 4 with individuals), "
            f"got {cols.nlevels} level(s)",
            path,
        )
    names = COLUMN_NAMES if cols.nlevels == 3 else COLUMN_NAMES_MULTIANIMAL
    if list(cols.names) != names:
        if all(n is None for n in cols.names):
            df = df.copy()
            df.columns = cols.set_names(names)
            cols = df.columns
        else:
            raise ProjectError(f"column levels must be named {names}, got {list(cols.names)}", path)
    allowed = {"x", "y", "likelihood"} if likelihood else {"x", "y"}
    coords = list(dict.fromkeys(cols.get_level_values("coords")))
    wrong = [c for c in coords if c not in allowed]
    if wrong:
        raise ProjectError(f"coords must be {sorted(allowed)}, found {wrong}", path)
    points = cols.droplevel("coords")
    for point in dict.fromkeys(points):
        have = sorted(cols[points == point].get_level_values("coords"))
        if "x" not in have or "y" not in have or len(have) != len(set(have)):
            label = point if isinstance(point, str) else "/".join(map(str, point))
            raise ProjectError(f"body part {label!r} must have one x and one y column, has {have}", path)
    if cols.duplicated().any():
        raise ProjectError(f"duplicate columns: {list(cols[cols.duplicated()])}", path)
    scorers = list(dict.fromkeys(cols.get_level_values("scorer")))
    if len(scorers) != 1:
        raise ProjectError(f"expected one scorer, found {scorers}", path)
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c].dtype)]
    if bad:
        raise ProjectError(f"non-numeric values in column(s) {bad[:3]}", path)
    if any(dt != np.float64 for dt in df.dtypes):
        df = df.astype(np.float64)
    return df


def _with_scorer(df: pd.DataFrame, scorer: str) -> pd.DataFrame:
    """A copy of single-scorer ``df`` whose scorer level is ``scorer``."""
    out = df.copy()
    out.columns = df.columns.remove_unused_levels().set_levels([scorer], level="scorer")
    return out


def read_collected(
    path: str | os.PathLike,
    bodyparts: Sequence[str] | Mapping | None = None,
    *,
    likelihood: bool = False,
) -> pd.DataFrame:
    """Read ``CollectedData_<scorer>.h5`` (key ``df_with_missing``) or ``.csv``.

    ``path`` may also be a ``labeled-data/<video>`` folder holding one
    CollectedData file (the ``.h5`` is preferred). The row index is returned as
    stored: legacy strings or DeepLabCut ≥ 2.2's MultiIndex. Multi-animal files
    (4 column levels) are read too. ``bodyparts`` (a list, or a config mapping)
    is checked against the file with :func:`check_bodyparts`. ``likelihood``
    also accepts ``likelihood`` coords (machine labels). Raises
    :class:`ProjectError` for a missing or malformed file.
    """
    path = Path(path)
    if path.is_dir():
        path = _find_collected(path)
    if not path.exists():
        raise ProjectError("file not found", path)
    suffix = path.suffix.lower()
    if suffix == ".h5":
        df = _read_hdf(path)
    elif suffix == ".csv":
        df = _read_csv(path)
    else:
        raise ProjectError("expected a .h5 or .csv CollectedData file", path)
    df = _validate_collected(df, path, likelihood=likelihood)
    if df.index.has_duplicates:
        raise ProjectError(f"images listed twice: {_image_keys(df.index[df.index.duplicated()])[:5]}", path)
    if bodyparts is not None:
        check_bodyparts(df, bodyparts, path)
    return df


def write_collected(
    df: pd.DataFrame,
    folder_or_path: str | os.PathLike,
    scorer: str | None = None,
    *,
    hdf_format: Literal["fixed", "table"] = "fixed",
) -> tuple[Path, Path]:
    """Write ``df`` as ``CollectedData_<scorer>.h5`` and ``.csv``, both atomically; returns both paths.

    ``folder_or_path`` is a ``labeled-data/<video>`` folder or the ``.h5``/``.csv``
    path. ``scorer`` defaults to the DataFrame's scorer; a different one
    replaces the scorer level (as ``deeplabcut.convertcsv2h5`` does). The HDF5
    file is ``df.to_hdf(path, key="df_with_missing", mode="w")`` (pandas'
    *fixed* format, like DeepLabCut's writers; ``hdf_format="table"`` works only
    with a string index), the CSV ``df.to_csv(path)``. The index style is kept.
    Both temporary files are complete before either target is replaced.
    """
    if not isinstance(df, pd.DataFrame):
        raise ProjectError(f"expected a DataFrame, got {type(df).__name__}")
    target = Path(folder_or_path)
    df = _validate_collected(df, target)
    own = df.columns.get_level_values("scorer")[0]
    scorer = scorer or own
    if scorer != own:
        df = _with_scorer(df, scorer)
    if df.index.has_duplicates:
        raise ProjectError(f"images listed twice: {_image_keys(df.index[df.index.duplicated()])[:5]}", target)
    if hdf_format == "table" and isinstance(df.index, pd.MultiIndex):
        raise ProjectError("pandas' table format cannot store a row MultiIndex; use hdf_format='fixed'", target)
    h5 = collected_path(target, scorer, ".h5")
    csv_file = collected_path(target, scorer, ".csv")

    def write_h5(tmp: Path) -> None:
        try:
            df.to_hdf(tmp, key=COLLECTED_KEY, mode="w", format=hdf_format)
        except OSError:
            raise
        except Exception as err:
            raise ProjectError(f"cannot write the HDF5 file: {_reason(err)}", h5) from err

    _atomic_write_files({h5: write_h5, csv_file: lambda tmp: df.to_csv(tmp)})
    return h5, csv_file


# --------------------------------------------------------------------------------------
# Index styles and conversion to arrays
# --------------------------------------------------------------------------------------


def index_style(df: pd.DataFrame) -> IndexStyle:
    """``"multi"`` for DeepLabCut ≥ 2.2's row MultiIndex, ``"string"`` for the legacy path index."""
    return "multi" if isinstance(df.index, pd.MultiIndex) else "string"


def _split_image_path(path: str) -> tuple[str, ...]:
    sep = "/" if "/" in path else "\\"
    return tuple(path.split(sep))


def _image_keys(index: pd.Index) -> list[str]:
    """Image paths of an index as strings (MultiIndex entries joined with ``/``)."""
    if isinstance(index, pd.MultiIndex):
        return ["/".join(map(str, entry)) for entry in index]
    return [str(entry) for entry in index]


def _multi_index(paths: Sequence[str], names=None) -> pd.MultiIndex:
    tuples = [_split_image_path(p) for p in paths]
    depths = {len(t) for t in tuples}
    if len(depths) > 1:
        raise ProjectError(f"image paths have different depths, cannot make a MultiIndex: {sorted(depths)}")
    if not tuples:
        return pd.MultiIndex.from_arrays([[], [], []], names=names)
    return pd.MultiIndex.from_tuples(tuples, names=names)


def to_multi_index(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with DeepLabCut ≥ 2.2's row MultiIndex (paths split on ``/``, or ``\\`` for Windows paths)."""
    if isinstance(df.index, pd.MultiIndex):
        return df.copy()
    out = df.copy()
    out.index = _multi_index([str(p) for p in df.index])
    return out


def to_string_index(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with the legacy string index (MultiIndex entries joined with ``/``)."""
    out = df.copy()
    if isinstance(df.index, pd.MultiIndex):
        out.index = pd.Index(_image_keys(df.index), name=None)
    return out


def _single_animal(df: pd.DataFrame, what: str) -> None:
    if df.columns.nlevels != 3:
        raise ProjectError(
            f"{what} handles single-animal data (scorer/bodyparts/coords), got {df.columns.nlevels} column levels"
        )


def collected_to_arrays(df: pd.DataFrame) -> tuple[list[str], list[str], np.ndarray]:
    """``(image_paths, bodyparts, xy)`` from single-animal CollectedData.

    ``image_paths`` are the index as strings (MultiIndex entries joined with
    ``/``), ``bodyparts`` in column order, ``xy`` a float64 array
    ``(n_images, n_bodyparts, 2)`` of ``(x, y)``, NaN where not labeled.
    """
    df = _validate_collected(df, likelihood=True)
    _single_animal(df, "collected_to_arrays")
    scorer = df.columns.get_level_values("scorer")[0]
    bodyparts = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
    cols = [(scorer, bp, c) for bp in bodyparts for c in ("x", "y")]
    xy = df.loc[:, cols].to_numpy(np.float64).reshape(len(df), len(bodyparts), 2)
    return _image_keys(df.index), bodyparts, xy


def arrays_to_collected(
    image_paths: Sequence[str],
    bodyparts: Sequence[str],
    xy: np.ndarray,
    scorer: str,
    index_style: IndexStyle = "multi",
) -> pd.DataFrame:
    """Single-animal CollectedData from ``(n_images, n_bodyparts, 2)`` coordinates.

    ``index_style="multi"`` gives DeepLabCut ≥ 2.2's row MultiIndex,
    ``"string"`` the legacy path index. Inverse of :func:`collected_to_arrays`.
    """
    xy = np.asarray(xy, dtype=np.float64)
    image_paths = [str(p) for p in image_paths]
    bodyparts = list(bodyparts)
    if xy.shape != (len(image_paths), len(bodyparts), 2):
        raise ProjectError(
            f"xy must have shape (n_images, n_bodyparts, 2) = ({len(image_paths)}, {len(bodyparts)}, 2), "
            f"got {xy.shape}"
        )
    if len(set(bodyparts)) != len(bodyparts):
        raise ProjectError(f"body parts listed twice: {bodyparts}")
    if index_style == "multi":
        index = _multi_index(image_paths)
    elif index_style == "string":
        index = pd.Index(image_paths)
    else:
        raise ProjectError(f"index_style must be 'multi' or 'string', got {index_style!r}")
    columns = pd.MultiIndex.from_product([[scorer], bodyparts, ["x", "y"]], names=COLUMN_NAMES)
    return pd.DataFrame(xy.reshape(len(image_paths), -1), index=index, columns=columns)


# --------------------------------------------------------------------------------------
# Merging human and machine labels
# --------------------------------------------------------------------------------------


def merge_collected(human: pd.DataFrame, machine: pd.DataFrame) -> pd.DataFrame:
    """Human labels completed by machine labels, sorted by index.

    Every body part a human placed in an image (x or y not NaN) is kept exactly,
    together with every human row and column. Machine values only fill body
    parts without a human label and add images the human file lacks; machine
    ``likelihood`` columns are dropped. The result has the human scorer, the
    human index style and the human body parts first (machine-only body parts
    after them).
    """
    human = _validate_collected(human, likelihood=False)
    machine = _validate_collected(machine, likelihood=True)
    if human.columns.nlevels != machine.columns.nlevels:
        raise ProjectError(
            f"cannot merge {human.columns.nlevels}-level human labels "
            f"with {machine.columns.nlevels}-level machine labels"
        )
    for name, df in (("human", human), ("machine", machine)):
        if df.index.has_duplicates:
            raise ProjectError(f"{name} labels list images twice: {_image_keys(df.index[df.index.duplicated()])[:5]}")
    scorer = human.columns.get_level_values("scorer")[0]
    machine = _with_scorer(machine.loc[:, machine.columns.get_level_values("coords") != "likelihood"], scorer)
    if index_style(machine) != index_style(human):
        machine = to_multi_index(machine) if index_style(human) == "multi" else to_string_index(machine)
        machine.index = machine.index.set_names(human.index.names)

    columns = human.columns.append(machine.columns[~machine.columns.isin(human.columns)])
    index = human.index.append(machine.index[~machine.index.isin(human.index)])
    h = human.reindex(index=index, columns=columns)
    m = machine.reindex(index=index, columns=columns)
    # a body part counts as human-labeled in an image when its x or its y is set
    point_of_column, points = pd.factorize(columns.droplevel("coords"))
    is_set = h.notna().to_numpy()
    point_labeled = np.stack([is_set[:, point_of_column == p].any(axis=1) for p in range(len(points))], axis=1)
    keep_human = point_labeled[:, point_of_column]
    return h.where(keep_human, m).sort_index()


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def check_bodyparts(df: pd.DataFrame, expected: Sequence[str] | Mapping, path=None) -> None:
    """Raise :class:`ProjectError` when the CollectedData body parts are not those of the config.

    ``expected`` is a list of body parts or a config mapping (see
    :func:`config_bodyparts`). The order may differ; missing or extra body parts
    may not. The message names both lists.
    """
    wanted = config_bodyparts(expected) if isinstance(expected, Mapping) else list(expected)
    found = list(dict.fromkeys(df.columns.get_level_values("bodyparts")))
    missing = [b for b in wanted if b not in found]
    extra = [b for b in found if b not in wanted]
    if missing or extra:
        details = []
        if missing:
            details.append(f"missing from the labels: {missing}")
        if extra:
            details.append(f"not in the config: {extra}")
        raise ProjectError(
            f"body parts of the labels {found} do not match the config's {wanted} ({'; '.join(details)})", path
        )


def image_sizes(folder: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """``{file name: (width, height)}`` of the images in a ``labeled-data/<video>`` folder, sorted by name.

    Lists PNG (DeepLabCut's default), JPEG (``.jpg``/``.jpeg``), BMP and TIFF
    files and reads only their headers (:func:`napari_posekit.core.images.image_size`).
    The sizes may differ: DeepLabCut trains such folders as they are.
    """
    from .images import image_size

    folder = Path(folder)
    if not folder.is_dir():
        raise ProjectError("not a folder", folder)
    sizes: dict[str, tuple[int, int]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        try:
            sizes[path.name] = image_size(path)
        except Exception as err:
            raise ProjectError(f"cannot read the image header: {_reason(err)}", path) from err
    return sizes


def check_image_sizes(folder: str | os.PathLike) -> tuple[int, int] | None:
    """The common ``(width, height)`` of a folder's images; None when it has none.

    Raises :class:`ProjectError` listing every size found (with example files)
    when the images do not all have the same size.  Training and evaluation
    accept such folders; this is for callers that need one size per folder.
    """
    sizes = image_sizes(folder)
    groups: dict[tuple[int, int], list[str]] = {}
    for name, size in sizes.items():
        groups.setdefault(size, []).append(name)
    if len(groups) > 1:
        described = "; ".join(
            f"{w}x{h}: {len(names)} image(s), e.g. {', '.join(names[:3])}"
            for (w, h), names in sorted(groups.items(), key=lambda item: -len(item[1]))
        )
        raise ProjectError(f"images of different sizes in one folder: {described}", folder)
    return next(iter(groups), None)


def check_labels(
    df: pd.DataFrame,
    image_sizes: Mapping[str, tuple[int, int]] | tuple[int, int],
) -> list[str]:
    """Warnings for labels outside their image (``0 <= x <= width``, ``0 <= y <= height``).

    ``image_sizes`` maps image paths (as in the index, joined with ``/``) or
    file names (as :func:`image_sizes` returns) to ``(width, height)``; a single
    ``(width, height)`` applies to every image. Images of unknown size are skipped.
    """
    df = _validate_collected(df, likelihood=True)
    keys = _image_keys(df.index)
    points = list(dict.fromkeys(df.columns.droplevel("coords")))  # (scorer, [individual,] bodypart)
    x = df.loc[:, [(*p, "x") for p in points]].to_numpy(np.float64)
    y = df.loc[:, [(*p, "y") for p in points]].to_numpy(np.float64)
    warnings_: list[str] = []
    for i, key in enumerate(keys):
        size = _size_for(key, image_sizes)
        if size is None:
            continue
        w, h = size
        for j, point in enumerate(points):
            xv, yv = x[i, j], y[i, j]
            if np.isnan(xv) and np.isnan(yv):
                continue
            if not (0 <= xv <= w and 0 <= yv <= h):
                label = "/".join(map(str, point[1:]))
                warnings_.append(f"{key}: {label} at ({xv:.1f}, {yv:.1f}) is outside the {w}x{h} image")
    return warnings_


def _size_for(key: str, sizes) -> tuple[int, int] | None:
    if isinstance(sizes, tuple) and len(sizes) == 2 and all(isinstance(v, (int, np.integer)) for v in sizes):
        return sizes
    if key in sizes:
        return sizes[key]
    name = _split_image_path(key)[-1]
    return sizes.get(name)


def missing_images(df: pd.DataFrame, project_folder: str | os.PathLike) -> list[str]:
    """Image paths of the index (as strings) with no file under ``project_folder``."""
    root = Path(project_folder)
    return [key for key in _image_keys(df.index) if not root.joinpath(*_split_image_path(key)).is_file()]
