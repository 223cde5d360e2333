"""Where checkpoints live: the state folder (the default), a folder every node mounts (NFS), or an object
store (``s3://bucket/prefix``), so that a cell resumes on whichever node runs it, with no shared file system.

    store = CheckpointStore.open("s3://team/ablate", ".ablate", "quickstart", endpoint="http://minio:9000")
    work, state = store.checkout(cell_id)           # in the trial: a local folder, and the checkpoint to resume
    store.commit(cell_id, work, step)               # after each checkpoint the trainer writes into ``work``
    with store.local_copy(cell_id) as folder: ...   # on the driver: the latest checkpoint and the samples

Layout below the storage root (the state folder by default, which keeps ``<state>/checkpoints/…``)::

    checkpoints/<experiment>/<cell id>/state.pt              the latest checkpoint: what a (re)try resumes from
    checkpoints/<experiment>/<cell id>/samples.png           a finished cell's sample restorations
    checkpoints/<experiment>/<cell id>/history/<step>.pt     with ``keep`` N > 1: the N latest checkpoints
    ray/<run>/…                                              Ray Tune's own experiment state

A folder store is written in place (the trainer's own writes are atomic: temp file + ``os.replace``); an
object store is reached through a local temp folder: the trial downloads the latest checkpoint before it
trains and uploads each new one. The store pickles into every trial with its filesystem's endpoint and
region, never a key: every node finds its own credentials, as for Ray Tune's own storage.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs as pafs

from ablate.errors import AblateError
from ablate.naming import safe_name
from ablate.train import CHECKPOINT_FILE

# Object stores publish an object whole when its upload completes; anything else is written to a temp
# name and renamed, which is atomic on a local disk and on NFS.
_OBJECT_STORES = ("s3", "gcs")
_HISTORY = "history"


class CheckpointStore:
    """The checkpoints of one experiment's cells, keyed by cell id, on a pyarrow filesystem.

    ``keep``: how many checkpoints per cell to keep; 1 (the default) keeps only ``state.pt``, more also
    keeps copies under ``history/`` named by step, the oldest deleted first.
    """

    def __init__(self, filesystem: pafs.FileSystem, root: str, experiment: str, keep: int = 1) -> None:
        if keep < 1:
            raise AblateError(f"checkpoints to keep: expected a positive integer, got {keep}")
        self.fs = filesystem
        self.root = root.rstrip("/") or "/"
        self.prefix = f"{self.root.rstrip('/')}/checkpoints/{safe_name(experiment)}"
        self.keep = keep
        # a folder store is the trainer's own checkpoint folder; an object store needs a local copy
        self.in_place = isinstance(filesystem, pafs.LocalFileSystem)

    @classmethod
    def open(cls, uri: str | Path | None, state_dir: Path, experiment: str, *, endpoint: str | None = None,
             keep: int = 1) -> CheckpointStore:
        """The store at ``uri`` (a folder or an object-store URI; None: ``state_dir``) for ``experiment``."""
        filesystem, root = storage_filesystem(str(uri) if uri else str(state_dir), endpoint)
        return cls(filesystem, root, experiment, keep)

    def __repr__(self) -> str:
        return f"CheckpointStore({self.url!r})"

    @property
    def url(self) -> str:
        """The storage root as a user wrote it: a path, or ``s3://bucket/prefix``."""
        return self.root if self.in_place else f"{self.fs.type_name}://{self.root}"

    def cell_path(self, cell_id: str) -> str:
        """The cell's folder on the filesystem (a local path, or ``bucket/prefix/…`` on S3)."""
        return f"{self.prefix}/{cell_id}"

    def ray_storage(self) -> tuple[str, pafs.FileSystem | None]:
        """``RunConfig(storage_path=…, storage_filesystem=…)`` for Ray Tune: the same place, folder ``ray``."""
        return f"{self.root.rstrip('/')}/ray", None if self.in_place else self.fs

    def check(self) -> None:
        """Fail early, in one line, when the storage cannot be reached (before any trial finds out)."""
        check = "check --storage, --storage-endpoint or AWS_ENDPOINT_URL, and the credentials"
        try:
            self.fs.get_file_info(self.root)
            # an object store answers for a missing bucket too; the first upload would fail in every trial
            bucket = self.root.split("/", 1)[0]
            missing = self.fs.type_name in _OBJECT_STORES and self.fs.get_file_info(bucket).type == pafs.FileType.NotFound
        except (OSError, ValueError) as err:
            raise AblateError(f"checkpoint storage {self.url}: {_first_line(err)} ({check})") from None
        if missing:
            raise AblateError(f"checkpoint storage {self.url}: there is no bucket {bucket!r} ({check})")

    # the trial's side --------------------------------------------------------------------------------
    def checkout(self, cell_id: str, discarded: Callable[[str], None] | None = None
                 ) -> tuple[Path, dict[str, Any] | None]:
        """(the folder the trainer checkpoints into, the cell's latest checkpoint or None: from step 0).

        The checkpoint is fetched into that folder first (from an object store: a fresh local temp folder,
        so also on a node that never ran the cell). One at the last step is returned too: the driver may
        have died after the cell finished but before it recorded that; the cell then only evaluates again
        (``--force`` deletes checkpoints first). An unreadable one is deleted: the cell starts over, and
        ``discarded`` is called with why (the trial tells the driver, which warns the user).
        """
        from ablate.train import load_checkpoint  # torch, in the trial's worker (the driver never reads one)

        work = Path(self.cell_path(cell_id)) if self.in_place else _work_folder(cell_id)
        if not self._fetch(self.cell_path(cell_id), work, (CHECKPOINT_FILE,)):
            return work, None
        try:
            return work, load_checkpoint(work)
        except AblateError as err:
            self.delete(cell_id)
            shutil.rmtree(work, ignore_errors=True)
            if discarded is not None:
                discarded(f"{err}; the cell starts over from step 0")
            return work, None

    def commit(self, cell_id: str, folder: Path, step: int, *, final: bool = False) -> None:
        """Publish the checkpoint the trainer wrote into ``folder`` (and the samples beside it) as the
        cell's latest; with ``final``, the cell is done with its local copy."""
        folder = Path(folder)
        cell = self.cell_path(cell_id)
        if not (self.in_place and folder == Path(cell)):
            # the checkpoint last: a reader that sees it sees the samples written before it
            names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != CHECKPOINT_FILE
                           and ".tmp" not in p.name) + [CHECKPOINT_FILE]
            for name in names:
                self._put(folder / name, f"{cell}/{name}")
        if self.keep > 1:
            self._keep_history(cell, step)
        if final and not self.in_place:
            shutil.rmtree(folder, ignore_errors=True)
            if folder.parent == _work_base():  # this process's folder, empty once its cell is done
                with suppress(OSError):
                    folder.parent.rmdir()

    # the driver's side -------------------------------------------------------------------------------
    @contextmanager
    def local_copy(self, cell_id: str) -> Iterator[Path]:
        """A local folder holding the cell's latest files (checkpoint, samples): the store's own folder
        for a folder store, else a temp copy removed on exit. Files written into it are not stored."""
        if self.in_place:
            yield Path(self.cell_path(cell_id))
            return
        folder = Path(tempfile.mkdtemp(prefix=f"ablate-{cell_id}-"))
        try:
            self._fetch(self.cell_path(cell_id), folder, None)
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def delete(self, cell_id: str) -> None:
        """Forget the cell's checkpoints (``--force`` reruns it from step 0)."""
        path = self.cell_path(cell_id)
        if self.in_place:
            shutil.rmtree(path, ignore_errors=True)
        elif self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            self.fs.delete_dir(path)

    # helpers -------------------------------------------------------------------------------------
    def _fetch(self, path: str, folder: Path, names: tuple[str, ...] | None) -> bool:
        """Copy the files ``names`` (None: every file) directly under ``path`` into ``folder``; whether
        the checkpoint is among them. A folder store's own folder is left as it is."""
        if self.in_place and folder == Path(path):
            return (folder / CHECKPOINT_FILE).exists()
        folder.mkdir(parents=True, exist_ok=True)
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        found = False
        for info in infos:
            name = info.base_name
            if info.is_file and (names is None or name in names) and ".tmp" not in name:
                with self.fs.open_input_stream(info.path) as src:
                    data = src.read()
                tmp = folder / f"{name}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, folder / name)
                found = found or name == CHECKPOINT_FILE
        return found

    def _put(self, local: Path, path: str) -> None:
        """Write ``local`` to ``path`` atomically: a reader sees the old object or the new one, whole."""
        data = local.read_bytes()  # read in full first: the upload can then fail only as a whole
        if self.fs.type_name in _OBJECT_STORES:
            # The object appears when the stream closes (one PUT, or the multipart upload's completion,
            # which S3 refuses while a part is missing); nothing is written under a temporary key.
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, path)

    def _keep_history(self, cell: str, step: int) -> None:
        """Copy the latest checkpoint to ``history/<step>.pt`` and drop all but the ``keep`` newest."""
        history = f"{cell}/{_HISTORY}"
        target = f"{history}/{step:09d}.pt"
        if self.fs.type_name in _OBJECT_STORES:
            self.fs.copy_file(f"{cell}/{CHECKPOINT_FILE}", target)  # a server-side copy: atomic like a PUT
        else:
            self.fs.create_dir(history, recursive=True)
            tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
            self.fs.copy_file(f"{cell}/{CHECKPOINT_FILE}", tmp)
            self.fs.move(tmp, target)
        infos = self.fs.get_file_info(pafs.FileSelector(history, allow_not_found=True))
        kept = sorted(info.path for info in infos if info.is_file and info.path.endswith(".pt"))
        for old in kept[:-self.keep]:
            self.fs.delete_file(old)


def storage_filesystem(uri: str, endpoint: str | None = None) -> tuple[pafs.FileSystem, str]:
    """(the pyarrow filesystem, the root path on it) for a folder or an object-store URI.

    ``s3://bucket/prefix`` takes its endpoint from ``endpoint``, else ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` (MinIO, Ceph, moto: ``http://host:9000``); other URIs (``gs://``, ``hdfs://``)
    go to pyarrow as they are.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser().resolve()
        return pafs.LocalFileSystem(), path.as_posix()
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise AblateError(f"checkpoint storage {uri}: expected s3://BUCKET/PREFIX")
        return _s3(parsed.netloc, endpoint), f"{parsed.netloc}{parsed.path}".rstrip("/")
    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise AblateError(f"checkpoint storage {uri}: {_first_line(err)}") from None
    return filesystem, str(root)


def _s3(bucket: str, endpoint: str | None) -> pafs.S3FileSystem:
    """An S3 filesystem with the endpoint and region written into it, so that it reaches the same store when
    unpickled on another node. No keys: each process finds its own (environment, ~/.aws, instance role),
    since Ray Tune pickles its storage filesystem into the experiment state it writes to the store."""
    env = os.environ
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {"region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")}
    if endpoint:
        url = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=url.netloc, scheme=url.scheme)
        kwargs["region"] = kwargs["region"] or "us-east-1"  # S3-compatible servers ignore it, boto needs one
    elif not kwargs["region"]:
        try:  # AWS itself: the bucket's region, or every request is redirected
            kwargs["region"] = pafs.resolve_s3_region(bucket)
        except (OSError, ValueError) as err:
            raise AblateError(f"checkpoint storage s3://{bucket}: {_first_line(err)} (set AWS_REGION, or "
                              "--storage-endpoint for an S3-compatible server)") from None
    return pafs.S3FileSystem(**kwargs)


def _work_base() -> Path:
    return Path(tempfile.gettempdir()) / f"ablate-ckpt-{os.getpid()}"


def _work_folder(cell_id: str) -> Path:
    """This process's local folder for the cell it trains; a Ray worker trains one cell at a time, so the
    folder of the cell before (a crashed trial leaves one behind) is removed, and so are the folders of
    workers that died (killed, or their node lost) before their cell's end."""
    base = _work_base()
    shutil.rmtree(base, ignore_errors=True)
    _remove_dead_folders(base.parent)
    (base / cell_id).mkdir(parents=True)
    return base / cell_id


def _remove_dead_folders(temp: Path) -> None:
    """Remove ``ablate-ckpt-<pid>`` folders in ``temp`` whose process no longer exists."""
    for folder in temp.glob("ablate-ckpt-*"):
        pid = folder.name.removeprefix("ablate-ckpt-")
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # alive, another user's
            pass


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
