"""Images read into an :class:`~aiqc.data.arrays.ArrayDatasetPlan` (modality ``"image"``):
from a folder of PNG or JPEG files (labels from subfolder names, or from a table mapping file
name to label), from a list of file paths, or from a numpy array.

Samples are stored channels last, (N, height, width, channels), in the dtype Pillow decodes
(uint8 for 8-bit images); a grayscale image keeps a channel axis of one. Pillow (the ``image``
extra) is imported only when files are read or written.

Every image must have the same size and color mode, unless ``resize=(height, width)`` or
``color_mode`` ("L", "RGB", "RGBA") asks Pillow to convert them all; either is recorded in the
dataset's ``settings`` and applied the same way to the images given to ``predict``
(:func:`read_for_prediction`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from aiqc.data.arrays import ArrayDatasetPlan, check_array
from aiqc.exceptions import MissingExtraError, ValidationError

#: file extensions read as images (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: names skipped in a folder besides hidden ones (starting with "."): what file browsers leave behind
IGNORED_NAMES = frozenset({"Thumbs.db", "desktop.ini"})
#: the color modes ``color_mode`` converts to, and the names of their channels
COLOR_MODES = {"L": ["gray"], "RGB": ["red", "green", "blue"], "RGBA": ["red", "green", "blue", "alpha"]}
#: every mode an image is stored in (after the conversions of :func:`_stored_mode`): channel names
MODE_CHANNELS = {**COLOR_MODES, "LA": ["gray", "alpha"], "I;16": ["gray"], "I": ["gray"], "F": ["gray"]}
#: Pillow's modes stored as another: bilevel as 8-bit gray, the rest as RGB(A)
_MODE_AS = {"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB",
            "LAB": "RGB", "HSV": "RGB", "I;16L": "I;16", "I;16B": "I;16", "I;16N": "I;16"}
#: the filter of every resize, when making a dataset and at predict (fixed: the two must agree)
RESAMPLE = "BICUBIC"
#: names shown in an error before "... and N more"
SHOWN = 10


def _pillow() -> Any:
    """The ``PIL.Image`` module, or a :class:`~aiqc.exceptions.MissingExtraError` naming the extra."""
    try:
        from PIL import Image
    except ImportError as error:
        raise MissingExtraError("Reading and writing image files needs Pillow, which is not installed: "
                                "pip install 'aiqc[image]'") from error
    return Image


def _show_names(names: list[str]) -> str:
    """At most :data:`SHOWN` names, then how many more."""
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f" ... and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


# --- checking the arguments ---------------------------------------------------------------------
def check_resize(resize: Any) -> list[int] | None:
    """None, or ``(height, width)`` as a list of two positive integers."""
    if resize is None:
        return None
    if (not isinstance(resize, (list, tuple)) or len(resize) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in resize)):
        raise ValidationError.expected("resize", "None or (height, width), two positive integers", resize)
    return [int(resize[0]), int(resize[1])]


def check_color_mode(color_mode: Any) -> str | None:
    """None, or one of :data:`COLOR_MODES`."""
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise ValidationError.expected("color_mode", f"None or one of {sorted(COLOR_MODES)!r} (Pillow's modes: "
                                       "8-bit gray, RGB, RGB with alpha)", color_mode)
    return color_mode


def _check_column(value: Any, parameter: str) -> str:
    """A column name: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValidationError.expected(parameter, "the name of a column (a non-empty string)", value)
    return value


# --- finding files ------------------------------------------------------------------------------
def _is_hidden(relative: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relative.parts) or relative.name in IGNORED_NAMES


def list_image_files(folder: Path, parameter: str, skip: Path | None = None) -> list[str]:
    """The image files under ``folder`` (any depth), as sorted relative POSIX names. Hidden files
    and folders are ignored, and so is ``skip`` (a labels file kept beside the images); any other
    file that is not a PNG or JPEG is an error listing them, as is a folder without images."""
    if not folder.is_dir():
        raise ValidationError(f"{parameter}: expected an existing folder of images; received {str(folder)!r} "
                              f"({'a file' if folder.exists() else 'no such folder'}).")
    skip = skip.resolve() if skip is not None else None
    images, others = [], []
    for root, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if not f.startswith(".")]
        for file in files:
            path = Path(root) / file
            relative = PurePosixPath(path.relative_to(folder).as_posix())
            if _is_hidden(relative) or (skip is not None and path.resolve() == skip):
                continue
            (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(str(relative))
    if others:
        others.sort()
        raise ValidationError(
            f"{parameter}: expected a folder holding only PNG or JPEG images ({', '.join(IMAGE_SUFFIXES)}); received "
            f"{len(others)} other file(s) in {str(folder)!r}: {_show_names(others)}. Move them out of the folder.")
    if not images:
        raise ValidationError(f"{parameter}: expected a folder holding PNG or JPEG images; received {str(folder)!r}, "
                              "which holds none.")
    return sorted(images)


def folder_table(folder: str | os.PathLike, label_column: str = "label", file_column: str = "file") -> pd.DataFrame:
    """The table of a folder of images labelled by subfolder (``folder/<label>/<file>``): one row
    per image, its name relative to ``folder`` and its label (the first-level subfolder's name),
    in sorted order. Reads no pixels."""
    names = list_image_files(Path(os.fspath(folder)), "source")
    return _subfolder_labels(names, label_column, file_column)


def _subfolder_labels(names: list[str], label_column: str, file_column: str) -> pd.DataFrame:
    """(file, label) of images labelled by the first-level subfolder they sit in."""
    unlabelled = [n for n in names if len(PurePosixPath(n).parts) < 2]
    if unlabelled:
        raise ValidationError(
            f"labels: expected each image in a subfolder named after its label (folder/<label>/<file>), or "
            f"labels= a table of file name and label; received {len(unlabelled)} image(s) without a label, directly "
            f"in the folder: {_show_names(unlabelled)}.")
    return pd.DataFrame({file_column: names, label_column: [PurePosixPath(n).parts[0] for n in names]})


# --- labels from a table ------------------------------------------------------------------------
def _labels_table(labels: Any) -> tuple[pd.DataFrame, Path | None]:
    """The labels table: a DataFrame, or read from a .csv/.tsv/.parquet path (also returned)."""
    from aiqc.data.frames import read_path

    if isinstance(labels, pd.DataFrame):
        return labels, None
    if isinstance(labels, (str, os.PathLike)):
        return read_path(labels, parameter="labels"), Path(os.fspath(labels)).expanduser()
    raise ValidationError.expected("labels", "a DataFrame or a .csv/.tsv/.parquet path mapping file name to label",
                                   labels)


def _normal_name(value: Any) -> str:
    """A file name as written in a labels table, made comparable: POSIX slashes, no './'."""
    return PurePosixPath(str(value).replace("\\", "/")).as_posix()


def _labels_from_table(names: list[str], table: pd.DataFrame, label_column: str, file_column: str,
                       aliases: dict[str, str] | None = None) -> pd.DataFrame:
    """(file, label) of each image in ``names``, looked up in ``table`` by ``file_column``
    (``aliases``: other spellings of a name, e.g. the path as given). A name in the table that
    is no image, an image the table lacks, and an image whose label is missing are errors."""
    for column, parameter in ((file_column, "file_column"), (label_column, "label_column")):
        if column not in table.columns:
            raise ValidationError(f"{parameter}: expected a column of the labels table {list(table.columns)[:20]!r}; "
                                  f"received {column!r}.")
    files = table[file_column]
    if files.isna().any():
        raise ValidationError(f"labels: expected a file name in every row of column {file_column!r}; received "
                              f"{int(files.isna().sum())} missing value(s).")
    keys = [_normal_name(v) for v in files]
    lookup = dict(aliases or {})
    lookup.update({n: n for n in names})
    resolved = [lookup.get(k) for k in keys]
    unknown = [str(v) for v, r in zip(files, resolved) if r is None]
    if unknown:
        raise ValidationError(
            f"labels: expected file names of the images (column {file_column!r}, relative to the folder); received "
            f"{len(unknown)} unknown name(s): {_show_names(unknown)}. Images found include {_show_names(names[:3])}.")
    seen: dict[str, int] = {}
    for r in resolved:
        seen[r] = seen.get(r, 0) + 1
    duplicated = sorted(n for n, c in seen.items() if c > 1)
    if duplicated:
        raise ValidationError(f"labels: expected one row per image; received {len(duplicated)} image(s) listed more "
                              f"than once: {_show_names(duplicated)}.")
    mapped = pd.Series(table[label_column].to_numpy(), index=pd.Index(resolved))
    missing = [n for n in names if n not in seen]
    if missing:
        raise ValidationError(f"labels: expected a label for every image; received {len(missing)} image(s) without a "
                              f"row in the labels table: {_show_names(missing)}.")
    values = mapped.reindex(names)
    blank = [n for n, v in zip(names, values.isna()) if v]
    if blank:
        raise ValidationError(f"labels: expected a label for every image; received {len(blank)} image(s) whose label "
                              f"({label_column!r}) is missing: {_show_names(blank)}.")
    return pd.DataFrame({file_column: names, label_column: values.to_numpy()})


# --- decoding -----------------------------------------------------------------------------------
@dataclass
class _Header:
    """What an image file's header says: its size (height, width) and the mode it is stored in."""

    name: str
    size: tuple[int, int] | None = None
    mode: str | None = None
    error: str | None = None


def _stored_mode(image: Any) -> str:
    """The mode an opened image is stored in (a key of :data:`MODE_CHANNELS`): palette images as
    RGB (RGBA with transparency), bilevel as 8-bit gray, CMYK and other color spaces as RGB."""
    mode = image.mode
    if mode == "P":
        return "RGBA" if "transparency" in image.info else "RGB"
    return _MODE_AS.get(mode, mode if mode in MODE_CHANNELS else "RGB")


def _read_headers(paths: list[Path], names: list[str]) -> list[_Header]:
    """Each file's header (Pillow reads no pixels yet); an unreadable one records its error."""
    Image = _pillow()
    headers = []
    for path, name in zip(paths, names):
        try:
            with Image.open(path) as image:
                headers.append(_Header(name, (image.height, image.width), _stored_mode(image)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            headers.append(_Header(name, error=f"{type(error).__name__}: {error}"))
    return headers


def _raise_corrupt(parameter: str, corrupt: list[_Header]) -> None:
    first = corrupt[0]
    raise ValidationError(
        f"{parameter}: expected readable PNG or JPEG images; received {len(corrupt)} file(s) Pillow cannot read: "
        f"{_show_names([h.name for h in corrupt])} (first: {first.error}). Remove or replace them.")


def _groups(values: list[Any], names: list[str]) -> list[tuple[Any, list[str]]]:
    """(value, names) per distinct value, the most common first."""
    grouped: dict[Any, list[str]] = {}
    for value, name in zip(values, names):
        grouped.setdefault(value, []).append(name)
    return sorted(grouped.items(), key=lambda item: -len(item[1]))


def _describe_groups(groups: list[tuple[Any, list[str]]], show: Any) -> str:
    """The most common kind counted, then the files of each other kind (at most 5 kinds)."""
    (value, names), others = groups[0], groups[1:]
    parts = [f"{len(names)} file(s) of {show(value)}"]
    parts += [f"{len(n)} file(s) of {show(v)}: {_show_names(n)}" for v, n in others[:5]]
    return ", and ".join(parts) + (f" (and {len(others) - 5} more kinds)" if len(others) > 5 else "")


def _check_uniform(parameter: str, headers: list[_Header], resize: list[int] | None,
                   color_mode: str | None) -> tuple[tuple[int, int], str]:
    """The one (height, width) and mode every image will have; mixed ones are an error naming
    the files of each kind (and what to pass to convert them)."""
    names = [h.name for h in headers]
    modes = [color_mode or h.mode for h in headers]
    mode_groups = _groups(modes, names)
    if len(mode_groups) > 1:
        raise ValidationError(
            f"{parameter}: expected images of one color mode (the same channels); received "
            f"{_describe_groups(mode_groups, lambda m: f'{m} ({len(MODE_CHANNELS[m])} channel(s))')}. Pass "
            f"color_mode='L', 'RGB' or 'RGBA' to convert them all.")
    sizes = [tuple(resize) if resize else h.size for h in headers]
    size_groups = _groups(sizes, names)
    if len(size_groups) > 1:
        raise ValidationError(
            f"{parameter}: expected images of one size; received "
            f"{_describe_groups(size_groups, lambda s: f'{s[0]}x{s[1]} (height x width)')}. Pass "
            f"resize=(height, width) to resize them all.")
    return size_groups[0][0], mode_groups[0][0]


def _decode(image: Any, color_mode: str | None, resize: list[int] | None) -> np.ndarray:
    """An opened image's pixels (height, width, channels): in its stored mode, or converted to
    ``color_mode``; then resized to ``resize`` (height, width) when given."""
    Image = _pillow()
    mode = color_mode or _stored_mode(image)
    if image.mode != mode:
        image = image.convert(mode)
    if resize is not None and (image.height, image.width) != tuple(resize):
        image = image.resize((resize[1], resize[0]), resample=getattr(Image.Resampling, RESAMPLE))
    array = np.asarray(image)
    if array.dtype.byteorder == ">":  # I;16B
        array = array.astype(array.dtype.newbyteorder("="))
    return array.reshape(image.height, image.width, len(MODE_CHANNELS[mode]))


def read_images(paths: list[Path], names: list[str], resize: list[int] | None = None,
                color_mode: str | None = None, parameter: str = "source") -> tuple[np.ndarray, list[str]]:
    """The images at ``paths`` as one array (N, height, width, channels) and the channel names.

    The headers are read first, so that mixed sizes or modes are found before any pixel is
    decoded; then each image is decoded into its place in the array (memory: about the
    array). Unreadable files, mixed sizes and mixed modes are errors naming the files."""
    Image = _pillow()
    headers = _read_headers(paths, names)
    corrupt = [h for h in headers if h.error]
    if corrupt:
        _raise_corrupt(parameter, corrupt)
    (height, width), mode = _check_uniform(parameter, headers, resize, color_mode)
    channels = MODE_CHANNELS[mode]
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}.get(mode, np.uint8)
    array = np.empty((len(paths), height, width, len(channels)), dtype=dtype)
    for position, (path, header) in enumerate(zip(paths, headers)):
        try:
            with Image.open(path) as image:
                array[position] = _decode(image, color_mode, resize)
        except (OSError, SyntaxError, ValueError) as error:  # truncated or damaged pixel data
            header.error = f"{type(error).__name__}: {error}"
    corrupt = [h for h in headers if h.error]
    if corrupt:
        _raise_corrupt(parameter, corrupt)
    return array, list(channels)


def array_channels(count: int) -> list[str]:
    """Channel names of an image array with ``count`` channels (its last axis)."""
    return {1: ["gray"], 2: ["gray", "alpha"], 3: COLOR_MODES["RGB"], 4: COLOR_MODES["RGBA"]}.get(
        count, [f"channel_{i}" for i in range(count)])


# --- the plan -----------------------------------------------------------------------------------
def plan_images(source: Any, label_column: str = "label", *, labels: Any = None, file_column: str = "file",
                resize: Any = None, color_mode: Any = None, name: str | None = None,
                description: str | None = None) -> ArrayDatasetPlan:
    """The checked :class:`~aiqc.data.arrays.ArrayDatasetPlan` of ``Pipeline.Image.make``: the
    images as one array (N, H, W, C) and a table of one row per image (``file_column``: its name
    relative to the folder, or None for an array; ``label_column``: its label). See
    ``Pipeline.Image.make`` for the sources. Nothing is written."""
    label_column = _check_column(label_column, "label_column")
    file_column = _check_column(file_column, "file_column")
    if label_column == file_column:
        raise ValidationError(f"file_column: expected a name other than label_column; both are {label_column!r}.")
    resize, color_mode = check_resize(resize), check_color_mode(color_mode)
    if isinstance(source, np.ndarray):
        return _plan_array(source, label_column, labels, file_column, resize, color_mode, name, description)
    if isinstance(source, (str, os.PathLike)):
        return _plan_folder(Path(os.fspath(source)).expanduser(), label_column, labels, file_column, resize,
                            color_mode, name, description)
    if isinstance(source, (list, tuple)) and source and all(isinstance(p, (str, os.PathLike)) for p in source):
        return _plan_files(list(source), label_column, labels, file_column, resize, color_mode, name, description)
    raise ValidationError.expected("source", "a folder of PNG/JPEG images, a list of image file paths, or a numpy "
                                   "array (N, height, width[, channels])", source)


def _settings(resize: list[int] | None, color_mode: str | None) -> dict[str, Any]:
    """How the images were made, as recorded in ``Dataset.settings``."""
    settings: dict[str, Any] = {}
    if resize is not None:
        settings["resize"] = resize
    if color_mode is not None:
        settings["color_mode"] = color_mode
    return settings


def _plan_folder(folder: Path, label_column: str, labels: Any, file_column: str, resize: list[int] | None,
                 color_mode: str | None, name: str | None, description: str | None) -> ArrayDatasetPlan:
    if labels is None:
        names = list_image_files(folder, "source")
        table = _subfolder_labels(names, label_column, file_column)
    else:
        frame, labels_path = _labels_table(labels)
        names = list_image_files(folder, "source", skip=labels_path)
        table = _labels_from_table(names, frame, label_column, file_column)
    array, channels = read_images([folder / n for n in names], names, resize, color_mode)
    return ArrayDatasetPlan(array=check_array(array, "image", "source"), df=table, modality="image",
                            channels=channels, source=str(folder), name=name, description=description,
                            settings=_settings(resize, color_mode))


def _plan_files(paths: list[Any], label_column: str, labels: Any, file_column: str, resize: list[int] | None,
                color_mode: str | None, name: str | None, description: str | None) -> ArrayDatasetPlan:
    """A list of image files, kept in the order given; their names in the table are relative to
    the folder they share."""
    given = [Path(os.fspath(p)).expanduser() for p in paths]
    wrong = [str(p) for p in given if p.suffix.lower() not in IMAGE_SUFFIXES]
    if wrong:
        raise ValidationError(f"source: expected paths of PNG or JPEG images ({', '.join(IMAGE_SUFFIXES)}); received "
                              f"{len(wrong)} other path(s): {_show_names(wrong)}.")
    absent = [str(p) for p in given if not p.is_file()]
    if absent:
        raise ValidationError(f"source: expected existing image files; received {len(absent)} path(s) that are "
                              f"not files: {_show_names(absent)}.")
    resolved = [p.resolve() for p in given]
    groups = _groups([str(p) for p in resolved], [str(p) for p in given])
    repeated = [names[0] for _, names in groups if len(names) > 1]
    if repeated:
        raise ValidationError(f"source: expected each image once; received {len(repeated)} path(s) given more than "
                              f"once: {_show_names(repeated)}.")
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    names = [p.relative_to(common).as_posix() for p in resolved]
    if labels is None:
        raise ValidationError("labels: expected the labels of the image files: a list of one label per path, or a "
                              "DataFrame / CSV path mapping file name to label; received None.")
    if isinstance(labels, (pd.DataFrame, str, os.PathLike)):
        frame, _ = _labels_table(labels)
        aliases = {_normal_name(p): n for p, n in zip(paths, names)}
        aliases.update({p.as_posix(): n for p, n in zip(resolved, names)})
        table = _labels_from_table(names, frame, label_column, file_column, aliases)
    else:
        table = pd.DataFrame({file_column: names, label_column: _label_values(labels, len(names))})
    array, channels = read_images(resolved, names, resize, color_mode)
    return ArrayDatasetPlan(array=check_array(array, "image", "source"), df=table, modality="image",
                            channels=channels, source=str(common), name=name, description=description,
                            settings=_settings(resize, color_mode))


def _label_values(labels: Any, count: int) -> np.ndarray:
    """A 1-D list/array/Series of ``count`` labels, one per image."""
    if isinstance(labels, pd.Series):
        labels = labels.to_numpy()
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValidationError.expected("labels", "one label per image: a list, 1-D numpy array or Series (or a "
                                       "DataFrame with label_column)", labels)
    values = np.asarray(labels) if not isinstance(labels, np.ndarray) else labels
    if values.ndim != 1:
        raise ValidationError(f"labels: expected a 1-D list or array of labels, one per image; received shape "
                              f"{values.shape}.")
    if len(values) != count:
        raise ValidationError(f"labels: expected {count} labels, one per image; received {len(values)}.")
    return values


def _plan_array(array: np.ndarray, label_column: str, labels: Any, file_column: str, resize: list[int] | None,
                color_mode: str | None, name: str | None, description: str | None) -> ArrayDatasetPlan:
    """A numpy array (N, H, W) or (N, H, W, C) of images, with one label each."""
    for value, parameter in ((resize, "resize"), (color_mode, "color_mode")):
        if value is not None:
            raise ValidationError(f"{parameter}: expected None with a numpy array (it applies to image files); "
                                  f"received {value!r}. Resize or convert the array before passing it.")
    if array.ndim == 3:
        array = array[..., None]  # grayscale (N, H, W): a channel axis of one
    array = check_array(array, "image", "source")
    if labels is None:
        raise ValidationError("labels: expected one label per image with a numpy array (a list, 1-D array or a "
                              "DataFrame with label_column); received None.")
    if isinstance(labels, pd.DataFrame):
        if label_column not in labels.columns:
            raise ValidationError(f"label_column: expected a column of labels {list(labels.columns)[:20]!r}; "
                                  f"received {label_column!r}.")
        values = _label_values(labels[label_column].to_numpy(), len(array))
    else:
        values = _label_values(labels, len(array))
    table = pd.DataFrame({file_column: pd.Series([None] * len(array), dtype=object), label_column: values})
    return ArrayDatasetPlan(array=array, df=table, modality="image", channels=array_channels(array.shape[-1]),
                            source="numpy.ndarray", name=name, description=description, settings={})


# --- predict ------------------------------------------------------------------------------------
def read_for_prediction(inputs: Any, sample_shape: tuple, settings: dict, parameter: str) -> np.ndarray:
    """Images given to ``predict`` as files: an image path, a list of paths, or a folder (every
    PNG/JPEG under it, in sorted order), or PIL images; read with the dataset's recorded
    ``settings`` (its resize and color mode) and checked against ``sample_shape`` (H, W, C)."""
    resize = settings.get("resize")
    color_mode = settings.get("color_mode")
    shape = tuple(int(d) for d in sample_shape)
    Image = _pillow()
    if isinstance(inputs, Image.Image) or (isinstance(inputs, (list, tuple)) and inputs
                                           and all(isinstance(i, Image.Image) for i in inputs)):
        images = [inputs] if isinstance(inputs, Image.Image) else list(inputs)
        headers = [_Header(f"image {i}", (im.height, im.width), _stored_mode(im)) for i, im in enumerate(images)]
        _check_uniform(parameter, headers, resize, color_mode)
        array = np.stack([_decode(im, color_mode, resize) for im in images])
    else:
        if isinstance(inputs, (str, os.PathLike)):
            path = Path(os.fspath(inputs)).expanduser()
            if path.is_dir():
                names = list_image_files(path, parameter)
                paths = [path / n for n in names]
            else:
                paths, names = [path], [str(path)]
        elif isinstance(inputs, (list, tuple)) and inputs and all(isinstance(p, (str, os.PathLike)) for p in inputs):
            paths = [Path(os.fspath(p)).expanduser() for p in inputs]
            names = [str(p) for p in paths]
        else:
            raise ValidationError.expected(parameter, "a numpy array of images, an image file path, a list of them, "
                                           "a folder of images, or PIL images", inputs)
        absent = [n for p, n in zip(paths, names) if not p.is_file()]
        if absent:
            raise ValidationError(f"{parameter}: expected existing image files; received {len(absent)} path(s) that "
                                  f"are not files: {_show_names(absent)}.")
        array, _ = read_images(paths, names, resize, color_mode, parameter)
    if array.shape[1:] != shape:
        height, width, channels = array.shape[1:]
        hints = []
        if (height, width) != shape[:2]:
            hints.append(f"size {height}x{width} where the model was trained on {shape[0]}x{shape[1]} (height x width)")
        if channels != shape[2]:
            hints.append(f"{channels} channel(s) where the model was trained on {shape[2]}")
        raise ValidationError(f"{parameter}: expected images of the shape the model was trained on, {shape}; "
                              f"received images of {' and '.join(hints)}. Resize or convert them first.")
    return array


# --- the bundled digits ---------------------------------------------------------------------------
def write_digits(folder: str | os.PathLike) -> Path:
    """Write scikit-learn's digits (1,797 8x8 images, values 0..16 scaled to 0..255) as
    grayscale PNG files ``folder/digits/<label>/<index:04d>.png``; returns ``folder/digits``."""
    from sklearn.datasets import load_digits

    Image = _pillow()
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    target = Path(os.fspath(folder)) / "digits"
    for label in np.unique(digits.target):
        (target / str(label)).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(pixels, digits.target)):
        Image.fromarray(image).save(target / str(label) / f"{index:04d}.png", format="PNG")
    return target
