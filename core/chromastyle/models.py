"""Model registry, cache and downloads.

The registry is data (``models/registry.toml``, shipped inside the wheel); more entries can be
added with a registry file in ``$CHROMASTYLE_HOME/registry.toml`` or ``$CHROMASTYLE_REGISTRY``.
A model's files are looked up bundled (inside the package) first, then in the cache
(platformdirs' user cache, or ``$CHROMASTYLE_HOME/models``); ``CHROMASTYLE_OFFLINE=1`` never
touches the network.
"""
import hashlib
import os
import re
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


OFFLINE_WORDS = {"1": True, "true": True, "yes": True, "on": True,
                 "": False, "0": False, "false": False, "no": False, "off": False}


def offline():
    """CHROMASTYLE_OFFLINE: 1/true/yes/on never touch the network; unset, empty, 0/false/no/off
    mean online (any case). Anything else is an error rather than a guess."""
    value = os.environ.get("CHROMASTYLE_OFFLINE", "").strip().lower()
    if value not in OFFLINE_WORDS:
        raise UserError(f"CHROMASTYLE_OFFLINE={os.environ['CHROMASTYLE_OFFLINE']!r} is not understood; "
                        "use 1 (offline) or 0 (online)")
    return OFFLINE_WORDS[value]


# Model names, versions and file names become folder and file names in the cache: one plain name
# each, never a path ("..", "/", "\\", a drive) that would reach outside it.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def safe_name(value, what):
    value = str(value)
    if not SAFE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{what} {value!r} is not a plain name (letters, digits, . _ + -, no '..')")
    return value


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
                files = [ModelFile(safe_name(f["name"], "file name"), f["sha256"].lower(), int(f["size"]),
                                   list(f.get("urls", []))) for f in m["files"]]
                if not files:
                    raise ValueError("no files")
                name = safe_name(m["name"], "model name")
                entries[name] = ModelEntry(name, safe_name(m["version"], "version"), m.get("license", ""),
                                           files, dict(m.get("styles", {})),
                                           bool(m.get("default", False)), m.get("description", ""))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise UserError(f"registry {path}: model entry {m.get('name', '?')!r} is incomplete or "
                                f"unsafe ({e})") from None
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


_checked = {}   # (path, size, mtime_ns) -> sha256 matched; each file is hashed once per change


def checked(path, f: ModelFile):
    """Like file_ok, but a file that has not changed since it was last hashed is not hashed again."""
    try:
        st = path.stat()
    except OSError:
        return False
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _checked:
        _checked[key] = st.st_size == f.size and sha256_of(path) == f.sha256
    return _checked[key]


def local_path(entry, f):
    """Where the file is (bundled or cached) with the registered size, or None."""
    bundled = entry.bundled_path(f)
    if bundled.is_file() and bundled.stat().st_size == f.size:
        return bundled
    cached = entry.cache_dir() / f.name
    return cached if cached.is_file() and cached.stat().st_size == f.size else None


def intact_folder(entry):
    """The folder where every file of the model is as registered (size and sha256), side by side
    (the main file names the others): the bundled one, else the cache; None when neither is."""
    for folder in (entry.bundled_path(entry.main_file).parent, entry.cache_dir()):
        if all(checked(folder / f.name, f) for f in entry.files):
            return folder
    return None


def model_path(name=None, progress=None):
    """Path of a model's main file, after checking every file of the model against the registry
    (a flipped byte is found before the model runs), downloading what is missing or corrupt."""
    entry = get_entry(name)
    folder = intact_folder(entry)
    if folder is not None:
        return folder / entry.main_file.name
    if offline():
        bad = [f.name for f in entry.files if not checked(entry.cache_dir() / f.name, f)]
        raise ModelError(f"model '{entry.name}' is not downloaded or is corrupt ({', '.join(bad)}: missing, or "
                         "not the registered size and sha256) and CHROMASTYLE_OFFLINE is set; run "
                         f"`chromastyle models verify --fix {entry.name}` while online")
    return pull(entry.name, progress=progress)


def pull(name=None, progress=None, **download_opts):
    """Download into the cache every file of the model that is not there intact (unless the bundled
    copy is whole); returns the main file's path."""
    entry = get_entry(name)
    folder = intact_folder(entry)
    if folder is not None:
        return folder / entry.main_file.name
    for f in entry.files:
        if checked(entry.cache_dir() / f.name, f):
            continue
        if offline():
            raise ModelError(f"cannot download '{entry.name}': CHROMASTYLE_OFFLINE is set")
        download(f.urls, entry.cache_dir() / f.name, f.sha256, f.size, progress=progress, **download_opts)
    return entry.cache_dir() / entry.main_file.name


def verify(name=None, fix=False):
    """[(file, 'ok' | 'missing' | 'corrupt' | 'fixed')]; fixing downloads, so it needs to be online."""
    entry = get_entry(name)
    if fix and offline():
        raise ModelError("cannot fix models while CHROMASTYLE_OFFLINE is set; unset it (or set it to 0) "
                         "and run `chromastyle models verify --fix` again")
    report = []
    for f in entry.files:
        path = local_path(entry, f) or entry.cache_dir() / f.name
        state = "ok" if file_ok(path, f) else ("corrupt" if path.exists() else "missing")
        if state != "ok" and fix:   # the download replaces a corrupt cached copy atomically
            path = download(f.urls, entry.cache_dir() / f.name, f.sha256, f.size)
            state = "fixed"
        report.append((str(path), state))
    return report


def remove(name):
    entry = get_entry(name)
    folder = entry.cache_dir()
    removed = []
    for f in entry.files:
        p = folder / f.name
        if p.parent == folder and (p.is_file() or p.is_symlink()):   # names are plain: never outside
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
        try:
            announced = int(r.headers.get("Content-Length", ""))
        except ValueError:
            announced = None
        if size is not None and announced is not None and have + announced > size:
            raise _Retry(f"the mirror announces {have + announced} bytes; the registry says {size}")
        total = have + announced if announced is not None else size
        with open(part, "ab" if have else "wb") as out:
            for block in r.iter_content(chunk):
                if size is not None and have + len(block) > size:   # never read past the registered size
                    out.write(block[:size - have])
                    part.unlink()
                    raise _Retry(f"the mirror sent more than the registered {size} bytes")
                out.write(block)
                have += len(block)
                if progress:
                    progress(have, total)
    if size is not None and have < size:
        raise _Retry(f"connection closed after {have} of {size} bytes")
