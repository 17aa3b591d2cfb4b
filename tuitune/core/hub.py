"""Base models by Hub ID, `ORG/NAME[@REVISION]`: found in the local cache first, downloaded only when missing.

Resolution of an ID (after registered names and local folders, see `models.locate`):
1. the local cache of the hub (Hugging Face: `huggingface_hub.snapshot_download(local_files_only=True)`, which reads
   HF_HOME / HF_HUB_CACHE; ModelScope: its own snapshot_download), no network;
2. offline (HF_HUB_OFFLINE=1, or the Hub cannot be reached) with nothing cached: one `OfflineError` saying how to
   get the model onto this machine;
3. otherwise a download of only what a run needs (`select_files`: config, tokenizer, generation config, chat
   template, safetensors weights + index; no .bin/.pth/.gguf/onnx/flax copies, nothing in sub-folders), after the
   free disk space was checked against the repository's file sizes (`check_disk_space`, a pure function).
   A killed download continues with the files it had not finished: every finished file is in the cache already.
   (huggingface_hub 2.x restarts an unfinished file from its first byte, in a temporary file private to its
   process; `_drop_stale_partials` deletes the ones a killed process left behind.)

The resolved folder is the snapshot folder itself (`.../snapshots/<commit>`); `Located.revision` is that commit,
recorded in a run's config so the run can be repeated and its worker never needs the network.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from tuitune.core.models import Located, ModelError, Progress, has_chat_template, missing_parts

HUBS: tuple[str, ...] = ("huggingface", "modelscope")
# ORG/NAME: what the Hugging Face Hub and ModelScope accept as a model repository id.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# Free space kept beyond the files themselves (file-system blocks, the run's own checkpoints start small).
HEADROOM = 256 * 2**20

# Files a run reads from a model folder (top level only). Weights: safetensors; .bin only when a repository has
# no safetensors at all. Never: consolidated.* (mistral-inference copies), .pth, .gguf, .onnx, flax/tf weights.
_SMALL = ("*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken")
_NEVER = ("consolidated*", "*.pth", "*.pt", "*.gguf", "*.onnx", "*.msgpack", "*.h5", "*.ckpt")


class HubError(ModelError):
    """A Hub model that cannot be found, reached or downloaded, with what to do about it."""


class OfflineError(HubError):
    """The model is not in the local cache and the Hub cannot be reached (offline mode or no network)."""


class AccessError(HubError):
    """The Hub refused the model: not found, private, gated (needs HF_TOKEN / accepted terms)."""


class DiskSpaceError(HubError):
    """Not enough free disk space for the download."""


@dataclass(frozen=True)
class HubRef:
    id: str  # ORG/NAME
    revision: str | None = None  # a branch, tag or full commit hash; None: the default branch

    def __str__(self) -> str:
        return self.id + (f"@{self.revision}" if self.revision else "")


@dataclass
class CachedModel:
    """A model in the local Hugging Face cache that a run can use (config, weights, tokenizer all there)."""

    id: str
    revision: str  # the commit (snapshot folder name)
    refs: list[str] = field(default_factory=list)  # branches/tags pointing at it (main, v1.0, ...)
    size: int = 0  # bytes on disk of this revision's files
    chat_template: bool = False
    path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def parse_id(text: str) -> HubRef | None:
    """`ORG/NAME[@REVISION]` as a HubRef; None when `text` is not shaped like a model ID (a name, a path)."""
    repo, at, revision = text.strip().partition("@")
    if not _ID.fullmatch(repo) or ".." in repo or repo.endswith((".git", ".")):
        return None
    if at and not revision.strip():
        raise HubError(f"{text!r}: nothing after '@'; give a revision (a branch, tag or commit hash) or drop the '@'")
    return HubRef(repo, revision.strip() or None)


# ---- pure decisions (unit-tested without any hub) -----------------------------------------------------

def select_files(names: Iterable[str]) -> list[str]:
    """The files of a repository a run needs: top-level config/tokenizer/template files and one copy of the
    weights (safetensors, or pytorch_model*.bin when the repository has no safetensors)."""
    top = [n for n in names if "/" not in n and not any(fnmatch(n, p) for p in _NEVER)]
    weights = [n for n in top if n.endswith(".safetensors")]
    if not weights:
        weights = [n for n in top if fnmatch(n, "pytorch_model*.bin")]
    small = [n for n in top if any(fnmatch(n, p) for p in _SMALL)]
    if not any(n.endswith(".safetensors") for n in top):
        small = [n for n in small if n != "model.safetensors.index.json"]
    elif "pytorch_model.bin.index.json" in small:
        small.remove("pytorch_model.bin.index.json")
    return sorted(set(weights) | set(small))


def disk_shortfall(sizes: Iterable[int], free: int, headroom: int = HEADROOM) -> int:
    """Bytes missing for downloading files of these sizes into a file system with `free` bytes (0: it fits)."""
    return max(0, sum(sizes) + headroom - free)


def check_disk_space(sizes: Mapping[str, int], free: int, *, model: str, folder: str | Path,
                     headroom: int = HEADROOM) -> None:
    """Refuse (DiskSpaceError) a download of files {name: bytes} that does not fit in `free` bytes."""
    short = disk_shortfall(sizes.values(), free, headroom)
    if short:
        total = sum(sizes.values())
        raise DiskSpaceError(
            f"Not enough disk space to download {model}: its {len(sizes)} file(s) need {_gb(total)} (+ "
            f"{_gb(headroom)} kept free), {folder} has {_gb(free)} free; free {_gb(short)} or point HF_HOME "
            f"(or HF_HUB_CACHE) at a larger disk.")


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def offline_message(ref: HubRef | str, hub: str = "huggingface") -> str:
    if hub == "modelscope":
        how = (f"download it on a machine with network (`modelscope download --model {_plain(ref)}`) and copy its "
               f"ModelScope cache folder (~/.cache/modelscope) here")
    else:
        how = (f"download it on a machine with network (`huggingface-cli download {_plain(ref)}`, or `hf download`) "
               f"and copy its Hugging Face cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE) here")
    return (f"{ref} is not on this machine and the hub cannot be reached (offline: HF_HUB_OFFLINE=1 or no network). "
            f"To use it, {how}, or copy the model folder here and register it: "
            f"`tuitune models add NAME FOLDER`.")


def _plain(ref: HubRef | str) -> str:
    if isinstance(ref, HubRef):
        return ref.id + (f" --revision {ref.revision}" if ref.revision else "")
    return str(ref)


# ---- resolution -----------------------------------------------------------------------------------------

def locate(ref: HubRef, *, hub: str = "huggingface", progress: Progress | None = None,
           download: bool = True) -> Located:
    """The local folder of `ref`: from the cache, else downloaded (unless download=False)."""
    if hub not in HUBS:
        raise HubError(f"hub {hub!r}: expected one of {', '.join(HUBS)} (TUITUNE_HUB)")
    backend = _ModelScope() if hub == "modelscope" else _HuggingFace()
    found = backend.cached(ref)
    if found is not None:
        return found
    if backend.offline():
        raise OfflineError(offline_message(ref, hub))
    if not download:
        raise HubError(f"{ref} is not downloaded yet; download it with `tuitune models download {ref}` (or start "
                       f"the run without --dry-run, which downloads it).")
    return backend.download(ref, progress)


def cached_models() -> list[CachedModel]:
    """Usable models in the local Hugging Face cache (scan_cache_dir), one per cached revision, newest first."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)  # the same folder snapshot_download reads
    except CacheNotFound:
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: -r.last_modified):
            path = Path(rev.snapshot_path)
            if missing_parts(path):
                continue
            out.append(CachedModel(repo.repo_id, rev.commit_hash, sorted(rev.refs), rev.size_on_disk,
                                   has_chat_template(path), str(path)))
    return sorted(out, key=lambda m: m.id.lower())


def free_bytes(folder: str | Path) -> int:
    """Free bytes of the file system `folder` is (or will be) on."""
    p = Path(folder).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


class _Counter:
    """Bytes downloaded so far, reported to a Progress callback as 'downloading ID: x/y MiB'."""

    def __init__(self, what: str, total: int, progress: Progress):
        self.what, self.total, self.progress = what, max(total, 1), progress
        self.done = 0
        self._lock = threading.Lock()

    def add(self, n: float | None) -> None:
        with self._lock:  # reported under the lock: from several download threads, in order
            self.done = min(self.total, max(0, self.done + int(n or 0)))
            self.progress(f"downloading {self.what}: {_gb(self.done)} of {_gb(self.total)}", self.done / self.total)

    def finish(self) -> None:
        with self._lock:
            self.done = self.total
            self.progress(f"downloaded {self.what}: {_gb(self.total)}", 1.0)


def _missing(names: Iterable[str], snapshot: Path | None) -> list[str]:
    return [n for n in names if snapshot is None or not (snapshot / n).exists()]


class _HuggingFace:
    def cached(self, ref: HubRef) -> Located | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

        try:
            path = Path(snapshot_download(ref.id, revision=ref.revision, local_files_only=True))
        except IncompleteSnapshotError as e:
            # The cached file listing names every file of the repository; tuitune fetched only select_files of it.
            path = Path(e.snapshot_path)
            if _run_files_missing(ref, path):
                return None
        except LocalEntryNotFoundError:  # not cached
            return None
        if missing_parts(path):  # e.g. a download killed before the weights: resume it
            return None
        return Located(path, ref.id, path.name, "huggingface")

    def offline(self) -> bool:
        from huggingface_hub import constants

        return bool(constants.is_offline_mode())

    def download(self, ref: HubRef, progress: Progress | None) -> Located:
        import httpx2
        from huggingface_hub import HfApi, constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        try:
            try:
                info = HfApi().model_info(ref.id, revision=ref.revision, files_metadata=True)
                sizes = {s.rfilename: int(s.size or (s.lfs.size if s.lfs else 0) or 0) for s in info.siblings or []}
                wanted = select_files(sizes)
                _check_weights(ref, wanted)
                cache = Path(constants.HF_HUB_CACHE)
                _drop_stale_partials(cache, ref.id)
                snapshot = cache / f"models--{ref.id.replace('/', '--')}" / "snapshots" / (info.sha or "")
                todo = {n: sizes[n] for n in _missing(wanted, snapshot if info.sha else None)}
                check_disk_space(todo, free_bytes(cache), model=str(ref), folder=cache)
                counter = _Counter(str(ref), sum(todo.values()), progress) if progress else None
                path = snapshot_download(ref.id, revision=ref.revision, allow_patterns=wanted,
                                         tqdm_class=_tqdm_class(counter) if counter else None)
                if counter:
                    counter.finish()
            except (OfflineModeIsEnabled, httpx2.TransportError, LocalEntryNotFoundError):
                raise OfflineError(offline_message(ref)) from None
        except HubError:
            raise
        except Exception as e:  # noqa: BLE001 - every huggingface_hub HTTP error is mapped by _hf_error
            raise _hf_error(ref, e) from None
        path = Path(path)
        if (gone := missing_parts(path)):
            raise HubError(f"{ref} was downloaded to {path} but {gone}; is it a transformers model repository?")
        return Located(path, ref.id, path.name, "huggingface")


def _drop_stale_partials(cache: Path, repo_id: str) -> list[Path]:
    """Delete the partial files a killed download left in the repository's blobs/ (returns them).

    huggingface_hub 2.x downloads each file into `blobs/<etag>.<random>.incomplete` (private to the process) under
    the lock `.locks/models--ORG--NAME/<etag>.lock` and starts an unfinished file again from its first byte, so a
    partial file whose lock nobody holds only takes disk space. A download in progress holds its lock: its file
    is left alone."""
    from filelock import FileLock, Timeout

    folder = f"models--{repo_id.replace('/', '--')}"
    dropped = []
    for part in (cache / folder / "blobs").glob("*.incomplete"):
        lock = FileLock(str(cache / ".locks" / folder / f"{part.name.split('.')[0]}.lock"), timeout=0)
        try:
            with lock:
                part.unlink(missing_ok=True)
                dropped.append(part)
        except (Timeout, OSError):
            continue  # being downloaded right now (or not ours to delete)
    return dropped


def _run_files_missing(ref: HubRef, snapshot: Path) -> list[str]:
    """The files a run needs (select_files of the repository's cached listing) that `snapshot` lacks."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        names = [f.path for f in get_cached_repo_tree(ref.id, revision=snapshot.name)]
    except CachedRepoTreeNotFoundError:
        return []
    return _missing(select_files(names), snapshot)


def _check_weights(ref: HubRef, wanted: list[str]) -> None:
    if not any(n.endswith((".safetensors", ".bin")) for n in wanted):
        raise HubError(f"{ref} has no transformers weights (*.safetensors or pytorch_model*.bin) at its top level; "
                       f"tuitune trains from such repositories (a GGUF/ONNX-only repository cannot be trained).")


def _hf_error(ref: HubRef, e: Exception) -> Exception:
    """A huggingface_hub error as a HubError naming the model and what to do; other errors unchanged."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = "set HF_TOKEN to a token of an account that may read it (https://huggingface.co/settings/tokens)"
    if isinstance(e, GatedRepoError):
        return AccessError(f"{ref.id} is a gated model: accept its terms on https://huggingface.co/{ref.id} and "
                           f"{token}.")
    if isinstance(e, RevisionNotFoundError):
        return AccessError(f"{ref.id} has no revision {ref.revision!r}; give a branch, tag or full commit hash "
                           f"that exists (see https://huggingface.co/{ref.id}/commits/main).")
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, RepositoryNotFoundError) or status == 401:
        return AccessError(f"{ref.id} was not found on the Hugging Face Hub, or it is private: check the spelling "
                           f"(ORG/NAME), and for a private model {token}. (No folder {ref.id} exists here either.)")
    if isinstance(e, HfHubHTTPError):
        return HubError(f"the Hugging Face Hub answered {status or '?'} for {ref}: {str(e).splitlines()[0]}; try "
                        f"again later.")
    return e


def _tqdm_class(counter: _Counter):
    """A tqdm class for snapshot_download that prints nothing and adds the written bytes to `counter`.

    snapshot_download creates its bars with this class: the files bar, a transfer-bytes bar and the bytes bar
    that every file's download updates ("huggingface_hub.snapshot_download"); only the last one counts."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _Reporting(hf_tqdm):
        def __init__(self, *args, **kwargs):
            self._counts = kwargs.get("name") == "huggingface_hub.snapshot_download"
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if self._counts:
                counter.add(n)
            return super().update(n)

    return _Reporting


class _ModelScope:
    """The same resolution with ModelScope's own snapshot_download (`pip install modelscope`, not a dependency)."""

    def _module(self):
        try:
            import modelscope  # noqa: F401
            from modelscope import snapshot_download
        except ImportError:
            raise HubError("TUITUNE_HUB=modelscope needs the ModelScope client: `pip install modelscope` (or set "
                           "TUITUNE_HUB=huggingface).") from None
        return snapshot_download

    def cached(self, ref: HubRef) -> Located | None:
        snapshot_download = self._module()
        try:
            path = Path(snapshot_download(ref.id, revision=ref.revision, local_files_only=True))
        except Exception:  # noqa: BLE001 - ModelScope raises ValueError/FileNotFoundError/its own for "not cached"
            return None
        if missing_parts(path):
            return None
        return Located(path, ref.id, ref.revision or "master", "modelscope")

    def offline(self) -> bool:  # tuitune's one offline switch, whichever hub
        return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")

    def download(self, ref: HubRef, progress: Progress | None) -> Located:
        snapshot_download = self._module()
        from modelscope.hub.api import HubApi

        try:
            files = HubApi().get_model_files(ref.id, revision=ref.revision, recursive=True)
        except Exception as e:  # noqa: BLE001 - ModelScope's error classes differ between its versions
            raise _modelscope_error(ref, e) from None
        sizes = {f["Path"]: int(f.get("Size") or 0) for f in files if f.get("Type", "blob") != "tree"}
        wanted = select_files(sizes)
        _check_weights(ref, wanted)
        cache = Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope")
        check_disk_space({n: sizes[n] for n in wanted}, free_bytes(cache), model=str(ref), folder=cache)
        callbacks = None
        if progress:
            from modelscope.hub.callback import ProgressCallback

            counter = _Counter(str(ref), sum(sizes[n] for n in wanted), progress)

            class _Reporting(ProgressCallback):
                def update(self, size: int) -> None:
                    counter.add(size)

            callbacks = [_Reporting]
        try:
            path = Path(snapshot_download(ref.id, revision=ref.revision, allow_patterns=wanted,
                                          progress_callbacks=callbacks))
        except Exception as e:  # noqa: BLE001 - as above
            raise _modelscope_error(ref, e) from None
        if (gone := missing_parts(path)):
            raise HubError(f"{ref} was downloaded to {path} but {gone}")
        return Located(path, ref.id, ref.revision or "master", "modelscope")


def _modelscope_error(ref: HubRef, e: Exception) -> HubError:
    """A ModelScope client error as a HubError: no network -> the offline error; refused -> naming the token."""
    if isinstance(e, (ConnectionError, TimeoutError)):  # modelscope_hub's NetworkError is a ConnectionError
        return OfflineError(offline_message(ref, "modelscope"))
    if type(e).__name__ in ("AuthenticationError", "PermissionDeniedError", "NotExistError", "NotLoginException"):
        return AccessError(f"ModelScope refused {ref} ({type(e).__name__}): check the ID (ORG/NAME) on "
                           f"https://modelscope.cn/models/{ref.id}, and for a private or gated model set "
                           f"MODELSCOPE_API_TOKEN.")
    return HubError(f"ModelScope could not fetch {ref} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''});"
                    f" try again later.")
