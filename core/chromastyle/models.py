"""Model registry, cache and downloads.

The registry is data (``models/registry.toml``, shipped inside the wheel); more entries can be
added with a registry file in ``$CHROMASTYLE_HOME/registry.toml`` or ``$CHROMASTYLE_REGISTRY``.
A model's files are looked up bundled (inside the package) first, then in the cache
(platformdirs' user cache, or ``$CHROMASTYLE_HOME/models``); ``CHROMASTYLE_OFFLINE=1`` never
touches the network.
"""
import hashlib
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError, UserError

PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_models_dir():
    """models/ inside an installed wheel, or the repository's models/ in a source checkout."""
    inside = PACKAGE_DIR / "_models"
    return inside if inside.is_dir() else PACKAGE_DIR.parents[1] / "models"


def home_dir():
    env = os.environ.get("CHROMASTYLE_HOME")
    if env:
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_cache_dir("chromastyle", appauthor=False))


def offline():
    return os.environ.get("CHROMASTYLE_OFFLINE", "") not in ("", "0", "false", "no")


@dataclass
class ModelFile:
    name: str
    sha256: str
    size: int
    urls: list = field(default_factory=list)


@dataclass
class ModelEntry:
    name: str
    version: str
    license: str
    files: list
    styles: dict            # slug -> display name, in model index order
    default: bool = False
    description: str = ""

    @property
    def main_file(self):
        return self.files[0]

    def cache_dir(self):
        return home_dir() / "models" / self.name / self.version

    def bundled_path(self, f):
        return bundled_models_dir() / self.name / f.name


def registry_files():
    files = [bundled_models_dir() / "registry.toml", home_dir() / "registry.toml"]
    if os.environ.get("CHROMASTYLE_REGISTRY"):
        files.append(Path(os.environ["CHROMASTYLE_REGISTRY"]))
    return [f for f in files if f.is_file()]


def load_registry(paths=None):
    """Name -> ModelEntry; later files override earlier ones of the same name."""
    entries = {}
    for path in paths if paths is not None else registry_files():
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"cannot read the model registry {path}: {e}") from None
        for m in doc.get("model", []):
            try:
                files = [ModelFile(f["name"], f["sha256"].lower(), int(f["size"]), list(f.get("urls", [])))
                         for f in m["files"]]
                entries[m["name"]] = ModelEntry(m["name"], str(m["version"]), m.get("license", ""),
                                                files, dict(m.get("styles", {})),
                                                bool(m.get("default", False)), m.get("description", ""))
            except (KeyError, TypeError, ValueError) as e:
                raise UserError(f"registry {path}: model entry {m.get('name', '?')} is incomplete ({e})") from None
    return entries


def default_model_name(entries=None):
    entries = entries if entries is not None else load_registry()
    names = [n for n, e in entries.items() if e.default] or list(entries)
    if not names:
        raise ModelError("no model is registered; reinstall chromastyle")
    return names[-1]


def get_entry(name=None):
    entries = load_registry()
    name = name or default_model_name(entries)
    if name not in entries:
        raise UserError(f"unknown model '{name}'; known: {', '.join(entries) or 'none'}")
    return entries[name]


def sha256_of(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_ok(path, f: ModelFile):
    return path.is_file() and path.stat().st_size == f.size and sha256_of(path) == f.sha256


def local_path(entry, f):
    """Where the file is (bundled or cached), verified, or None."""
    bundled = entry.bundled_path(f)
    if bundled.is_file() and bundled.stat().st_size == f.size:
        return bundled
    cached = entry.cache_dir() / f.name
    return cached if cached.is_file() and cached.stat().st_size == f.size else None


def model_path(name=None, progress=None):
    """Path of a model's main file, downloading its files into the cache when needed."""
    entry = get_entry(name)
    found = [local_path(entry, f) for f in entry.files]
    if all(found) and len({p.parent for p in found}) == 1:   # the graphs must lie side by side
        return found[0]
    if offline():
        raise ModelError(f"model '{entry.name}' is not downloaded and CHROMASTYLE_OFFLINE is set; "
                         f"run `chromastyle models pull {entry.name}` while online")
    return pull(entry.name, progress=progress)


def pull(name=None, progress=None, **download_opts):
    entry = get_entry(name)
    for f in entry.files:
        if local_path(entry, f) and file_ok(local_path(entry, f), f):
            continue
        if offline():
            raise ModelError(f"cannot download '{entry.name}': CHROMASTYLE_OFFLINE is set")
        download(f.urls, entry.cache_dir() / f.name, f.sha256, f.size, progress=progress, **download_opts)
    return local_path(entry, entry.main_file)


def verify(name=None, fix=False):
    """[(file, 'ok' | 'missing' | 'corrupt' | 'fixed')]"""
    entry = get_entry(name)
    report = []
    for f in entry.files:
        path = local_path(entry, f) or entry.cache_dir() / f.name
        state = "ok" if file_ok(path, f) else ("corrupt" if path.exists() else "missing")
        if state != "ok" and fix:
            if path.exists() and path != entry.bundled_path(f):
                path.unlink()
            download(f.urls, entry.cache_dir() / f.name, f.sha256, f.size)
            state = "fixed"
        report.append((str(path), state))
    return report


def remove(name):
    entry = get_entry(name)
    removed = []
    for f in entry.files:
        p = entry.cache_dir() / f.name
        if p.exists():
            p.unlink()
            removed.append(str(p))
    return removed


# -- download --------------------------------------------------------------------------------

class DownloadError(ModelError):
    pass


def download(urls, dest, sha256, size=None, progress=None, retries=3, stall_timeout=30.0,
             backoff=1.0, chunk=1 << 16):
    """Fetch ``dest`` from the first mirror that works.

    Streams into ``dest.part`` and resumes it with a Range request (a 416 answer, or a server
    that ignores the range, restarts cleanly); retries with exponential backoff; a read that
    stalls for ``stall_timeout`` seconds counts as a failure; the sha256 is checked before an
    atomic rename, so ``dest`` is either absent or complete and correct. A file lock keeps two
    processes from writing the same file.
    """
    import requests
    from filelock import FileLock

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    with FileLock(str(dest) + ".lock"):
        if dest.exists() and sha256_of(dest) == sha256:
            return dest
        for url in urls:
            for attempt in range(retries):
                if attempt:
                    time.sleep(backoff * 2 ** (attempt - 1))
                try:
                    _fetch(requests, url, part, size, progress, stall_timeout, chunk)
                except (requests.RequestException, OSError, _Retry) as e:
                    errors.append(f"{url}: {e}")
                    continue
                if sha256_of(part) != sha256:
                    part.unlink()
                    errors.append(f"{url}: sha256 mismatch (the download was tampered with or corrupt)")
                    break  # the same mirror would send the same bytes; try the next
                os.replace(part, dest)
                return dest
    raise DownloadError("could not download " + dest.name + ":\n  " + "\n  ".join(errors or ["no URL"]))


class _Retry(Exception):
    pass


def _fetch(requests, url, part, size, progress, stall_timeout, chunk):
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=(10, stall_timeout)) as r:
        if r.status_code == 416:          # our part is useless to this server: start over
            part.unlink(missing_ok=True)
            raise _Retry("416 range not satisfiable; restarting")
        if r.status_code >= 400:
            raise _Retry(f"HTTP {r.status_code}")
        if r.status_code != 206:          # full body: the server ignored the range
            have = 0
        total = have + int(r.headers.get("Content-Length", 0)) if r.headers.get("Content-Length") else size
        with open(part, "ab" if have else "wb") as out:
            for block in r.iter_content(chunk):
                out.write(block)
                have += len(block)
                if progress:
                    progress(have, total)
    if size is not None and have < size:
        raise _Retry(f"connection closed after {have} of {size} bytes")
