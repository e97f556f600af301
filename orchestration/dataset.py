"""Getting the dataset: download (resumable), safe extraction, layout check, test split.

A source is a URL, a zip file or a folder in the dogImages layout
(``[dogImages/]{train,valid[,test]}/NNN.Breed_name/*.jpg``). The result is one
folder per channel, recorded in ``<workdir>/data/channels.json`` for the
commands that follow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dogbreed.errors import UserError

from .archives import extract_zip
from .progress import Progress

DOGIMAGES_URL = "https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip"
DOGIMAGES_SIZE = 1_132_023_110
KNOWN_SIZES = {DOGIMAGES_URL: DOGIMAGES_SIZE}
SPLITS = ("train", "valid", "test")
STATE_FILE = "channels.json"


class DatasetError(UserError):
    """The dataset cannot be fetched, extracted or used; the message says why."""


@dataclass
class Prepared:
    name: str
    channels: dict[str, Path]
    classes: int
    counts: dict[str, int]
    skipped: dict[str, int]

    def to_json(self) -> dict:
        return {"name": self.name, "channels": {k: str(v) for k, v in self.channels.items()},
                "classes": self.classes, "counts": self.counts, "skipped": self.skipped}

    @classmethod
    def from_json(cls, data: dict) -> Prepared:
        return cls(data["name"], {k: Path(v) for k, v in data["channels"].items()},
                   data["classes"], data["counts"], data.get("skipped", {}))


# -- download --------------------------------------------------------------
def download(url: str, dest: Path, expected_size: int | None = None) -> Path:
    """Fetch ``url`` to ``dest``, resuming a partial ``.part`` file; check the size."""
    import urllib.error  # lazily: `dogctl --help` never needs the HTTP client
    import urllib.request

    expected_size = expected_size or KNOWN_SIZES.get(url)
    if dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and expected_size and have == expected_size:  # already complete
            os.replace(part, dest)
            return dest
        raise DatasetError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(
            f"cannot reach {url} ({getattr(exc, 'reason', exc)}); without network access, pass a "
            "local copy: a zip or a folder in the dogImages layout (DATA=... with make)"
        ) from exc
    with resp:
        resumed = have and resp.status == 206
        if not resumed:
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length else expected_size
        if expected_size and total and total != expected_size:
            raise DatasetError(f"{url} is {total:,} bytes, expected {expected_size:,}")
        with open(part, "ab" if resumed else "wb") as out, Progress(f"download {dest.name}", total) as bar:
            bar.update(have)
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if (expected_size and size != expected_size) or (total and size != total):
        raise DatasetError(
            f"download of {url} stopped at {size:,} of {expected_size or total:,} bytes; run the "
            "same command again to resume"
        )
    os.replace(part, dest)
    return dest


# -- extraction ------------------------------------------------------------
def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract the zip into ``dest`` with :func:`orchestration.archives.extract_zip`'s checks
    (no traversal, links or bombs); an existing complete extraction is reused."""
    marker = dest / ".extracted"
    signature = f"{archive.resolve()} {archive.stat().st_size} {archive.stat().st_mtime_ns}"
    if marker.is_file() and marker.read_text() == signature:
        return dest
    with Progress(f"extract {archive.name}", None) as bar:
        extract_zip(archive, dest, progress=bar.advance_to)
    marker.write_text(signature)
    return dest


# -- layout ----------------------------------------------------------------
def find_splits(root: Path) -> dict[str, Path] | None:
    """The split folders under ``root`` (at its top or one or two levels down); None if there are
    none (:func:`find_class_folders` may find classes without a split)."""
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir()),
                      *sorted(p for p in root.glob("*/*") if p.is_dir())]:
        if (candidate / "train").is_dir() and (candidate / "valid").is_dir():
            return {s: candidate / s for s in SPLITS if (candidate / s).is_dir()}
    return None


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def find_class_folders(root: Path) -> Path | None:
    """The folder holding one folder of photos per class, with no train/valid split: ``root`` or
    its only subfolder (an archive's top folder); None if neither looks like that."""
    for candidate in (root, *(_visible_dirs(root)[:1] if len(_visible_dirs(root)) == 1 else [])):
        classes = _visible_dirs(candidate)
        if len(classes) >= 2 and all(any(f.is_file() for f in c.iterdir()) for c in classes):
            return candidate
    return None


def no_layout(root: Path) -> DatasetError:
    return DatasetError(
        f"no photos found in {root} in a layout dogctl knows: either one folder per class (split "
        "by dogctl), or the dogImages layout (train/, valid/ and optionally test/, each with one "
        "folder per class)")


def _fraction_of(name: str) -> float:
    """Where ``name`` falls in [0, 1), from its SHA-256: the same file always goes the same way."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") / 2**32


def split_classes(classes_root: Path, out: Path, valid_fraction: float, test_fraction: float) -> None:
    """``out/{train,valid,test}/<class>/`` made of links (or copies) to the photos of each class
    folder under ``classes_root``, by file-name hash: about ``test_fraction`` to test and
    ``valid_fraction`` to valid, the rest to train; each class keeps at least one photo in train,
    and one in valid (and test, when asked) when it has enough. ``classes_root`` is not changed.
    Hidden files are left out; anything else goes through, for train's scan to report."""
    for class_dir in _visible_dirs(classes_root):
        files = sorted((p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".")),
                       key=lambda f: (_fraction_of(f.name), f.name))
        wanted = [("test", test_fraction), ("valid", valid_fraction)]
        groups: dict[str, list[Path]] = {"test": [], "valid": [], "train": []}
        for f in files:
            where = _fraction_of(f.name)
            groups["test" if where < test_fraction else "valid" if where < test_fraction + valid_fraction
                   else "train"].append(f)
        for split, fraction in wanted:  # a small class still gets one of each split asked for
            if fraction > 0 and not groups[split] and len(groups["train"]) > 1:
                groups[split].append(groups["train"].pop())
        if not groups["train"]:
            donor = groups["valid"] or groups["test"]
            groups["train"].append(donor.pop())
        for split, group in groups.items():
            if split != "train" and not dict(wanted)[split]:
                continue
            (out / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            for f in group:
                _link_or_copy(f, out / split / class_dir.name / f.name)


def _in_test(name: str, fraction: float) -> bool:
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def carve_test(valid: Path, out: Path, fraction: float, *, move: bool) -> None:
    """Split about ``fraction`` of each valid class (by file-name hash, at least one image
    on each side) into ``out/test``. With ``move`` the files leave ``valid``; otherwise both
    ``out/valid`` and ``out/test`` are made of links (or copies) and ``valid`` is untouched."""
    for class_dir in sorted(p for p in valid.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        chosen = [f for f in files if _in_test(f.name, fraction)]
        if len(files) >= 2:
            chosen = chosen[: len(files) - 1] or files[-1:]
        for split, group in (("test", chosen), ("valid", [f for f in files if f not in chosen])):
            if split == "valid" and move:
                continue
            (out / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            for f in group:
                target = out / split / class_dir.name / f.name
                if move:
                    os.replace(f, target)
                else:
                    _link_or_copy(f, target)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def check_layout(channels: dict[str, Path]) -> tuple[int, dict[str, int], dict[str, int]]:
    """Scan every split (headers read), require the same classes; (classes, counts, skipped)."""
    from dogbreed.data.splits import DataError, check_same_classes, scan_split  # PIL: only here
    try:
        scans = {name: scan_split(name, path) for name, path in channels.items()}
        for name in ("valid", "test"):
            if name in scans:
                check_same_classes(scans["train"], scans[name])
    except DataError as exc:
        raise DatasetError(str(exc)) from exc
    counts = {n: len(s.samples) for n, s in scans.items()}
    skipped = {n: len(s.skipped) for n, s in scans.items()}
    return len(scans["train"].classes), counts, skipped


def _dataset_name(source: str) -> str:
    base = source.rstrip("/").rsplit("/", 1)[-1]
    return base[:-4] if base.lower().endswith(".zip") else base or "dataset"


def _split_class_folders(root: Path, out: Path, valid_fraction: float,
                         test_fraction: float) -> dict[str, Path]:
    """Channels for a folder of class folders: split once into ``out`` (made again when the fractions
    change), the photos themselves left where they are."""
    classes_root = find_class_folders(root)
    if classes_root is None:
        raise no_layout(root)
    signature = json.dumps({"source": str(classes_root.resolve()), "valid": valid_fraction,
                            "test": test_fraction})
    marker = out / ".split"
    if not marker.is_file() or marker.read_text() != signature:
        shutil.rmtree(out, ignore_errors=True)
        tmp = out.with_name(f".{out.name}-splitting")
        shutil.rmtree(tmp, ignore_errors=True)
        split_classes(classes_root, tmp, valid_fraction, test_fraction)
        os.replace(tmp, out)
        marker.write_text(signature)
    return {split: out / split for split in SPLITS if (out / split).is_dir()}


def prepare(source: str, workdir: Path, test_fraction: float = 0.5,
            fractions: tuple[float, float] = (0.15, 0.15)) -> Prepared:
    """Fetch, extract and check ``source``. The dogImages layout is used as it is, with a test
    split carved from valid (``test_fraction`` of it, 0: none) if it has none; a folder of class
    folders is split by file-name hash, ``fractions`` (valid, test) of each class (no test split
    when ``test_fraction`` is 0)."""
    name = _dataset_name(source)
    data_dir = workdir / "data"
    if source.startswith(("http://", "https://")):
        local = download(source, workdir / "downloads" / f"{name}.zip")
    else:
        local = Path(source).expanduser()
        if not local.exists():
            raise DatasetError(f"{source} does not exist (expected a zip, a folder or a URL)")
    owned = local.is_file()
    if owned:
        root = safe_extract(local, data_dir / name)
    else:
        root = local
    channels = find_splits(root) or _split_class_folders(
        root, data_dir / f"{name}-split", fractions[0], fractions[1] if test_fraction > 0 else 0.0)
    if "test" not in channels and test_fraction > 0:
        # An extracted copy is ours to rearrange; a user's folder is left as it is.
        out = channels["valid"].parent if owned else data_dir / f"{name}-split"
        if not (out / "test").is_dir():
            # Until carving completes, the extraction counts as unfinished (redone next time).
            marker = root / ".extracted"
            signature = marker.read_text() if owned else ""
            marker.unlink(missing_ok=True)
            tmp = data_dir / f".{name}-carving"
            shutil.rmtree(tmp, ignore_errors=True)
            carve_test(channels["valid"], tmp, test_fraction, move=owned)
            for split in ("valid", "test"):
                if (tmp / split).is_dir():
                    if (out / split).exists():
                        shutil.rmtree(out / split)
                    out.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp / split, out / split)
            shutil.rmtree(tmp, ignore_errors=True)
            if owned:
                marker.write_text(signature)
        channels["test"] = out / "test"
        channels["valid"] = out / "valid"
    classes, counts, skipped = check_layout(channels)
    prepared = Prepared(name, channels, classes, counts, skipped)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / STATE_FILE).write_text(json.dumps(prepared.to_json(), indent=1))
    return prepared


def save_s3_channels(workdir: Path, uris: dict[str, str]) -> None:
    """Record the S3 copies of the channels beside the local ones."""
    state = workdir / "data" / STATE_FILE
    data = json.loads(state.read_text())
    data["s3_channels"] = uris
    state.write_text(json.dumps(data, indent=1))


def load_s3_channels(workdir: Path) -> dict[str, str]:
    state = workdir / "data" / STATE_FILE
    uris = json.loads(state.read_text()).get("s3_channels") if state.is_file() else None
    if not uris:
        raise DatasetError("the channels are not in S3 yet: run `dogctl data --sagemaker`")
    return uris


def load_prepared(workdir: Path) -> Prepared:
    state = workdir / "data" / STATE_FILE
    if not state.is_file():
        raise DatasetError(f"no dataset prepared in {workdir}: run `dogctl data` first")
    return Prepared.from_json(json.loads(state.read_text()))
