#!/usr/bin/env python3
"""Build the Python-written part of Berth's layer corpus into an OCI image layout.

    hack/layer-corpus.py LAYOUT_DIR

Layers are written with Python's tarfile module (CPython's own tar writer, not Berth's), in the
GNU, PAX and USTAR formats, with and without the end-of-archive blocks, plus one sparse layer
written by GNU tar. Each image becomes a tag `py-*` in LAYOUT_DIR (created if missing), which
hack/layer-corpus.sh then pushes. Everything is deterministic: fixed mtimes and owners, gzip
without a timestamp, sorted JSON, so the same Python gives the same digests on every run.
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

MTIME = 1_600_000_000
BLOCK = 512
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LONG_DIR = "opt/" + "long-directory-name-" * 6  # > 100 bytes with the file name
LONG_TARGET = "../" + "/".join(["target"] * 20) + "/end"  # a symlink target > 100 bytes


class Layer:
    """One layer tar being written with tarfile in a given format."""

    def __init__(self, fmt):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=fmt)

    def add(self, name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link="",
            pax=None, mtime=MTIME, devmajor=0, devminor=0):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = mtime
        info.linkname = link
        info.devmajor, info.devminor = devmajor, devminor
        if pax:
            info.pax_headers = dict(pax)
        if kind == tarfile.REGTYPE:
            info.size = len(data)
            self.tar.addfile(info, io.BytesIO(data))
        else:
            self.tar.addfile(info)
        return self

    def dir(self, name, mode=0o755, uid=0, gid=0, pax=None):
        return self.add(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid, pax=pax)

    def done(self):
        """The whole archive: end-of-archive blocks, padded to tarfile's 10 KiB record."""
        self.tar.close()
        return self.buf.getvalue()


def last_data_end(tar_bytes):
    """Offset just past the last member's data (before its padding)."""
    end = 0
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as t:
        for m in t:
            end = m.offset_data + (m.size if m.isreg() else 0)
    return end


def without_trailer(tar_bytes):
    """Ends at the last entry's block boundary: no end-of-archive blocks at all."""
    end = last_data_end(tar_bytes)
    return tar_bytes[: (end + BLOCK - 1) // BLOCK * BLOCK]


def cut_after_data(tar_bytes):
    """Ends right after the last file's data, as `umoci insert` writes: no padding either."""
    return tar_bytes[: last_data_end(tar_bytes)]


def noise(n, seed):
    out = bytearray()
    block = seed.encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def gnu_layer():
    return (Layer(tarfile.GNU_FORMAT)
            .dir("opt/")
            .dir(LONG_DIR)
            .add(LONG_DIR + "/a-file-with-a-long-name.txt", data=b"long name\n")
            .add("opt/hard-to-long", tarfile.LNKTYPE, link=LONG_DIR + "/a-file-with-a-long-name.txt")
            .add("opt/link-long", tarfile.SYMTYPE, mode=0o777, link=LONG_TARGET)
            .add("opt/setuid", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000)
            .add("opt/big-ids", data=b"ids\n", uid=3_000_000, gid=3_000_001)
            .add("opt/empty")
            .add("opt/fifo", tarfile.FIFOTYPE, mode=0o600)
            .add("opt/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
            .dir("opt/private", mode=0o700, uid=1000, gid=1000)
            .add("opt/private/noise", data=noise(70_000, "gnu"), mode=0o640, uid=1000, gid=1000)
            .done())


def pax_layer():
    long_name = "opt/pax/" + "/".join(["deep-directory"] * 18) + "/file"
    return (Layer(tarfile.PAX_FORMAT)
            .dir("opt/")
            .dir("opt/pax/")
            .add("opt/pax/xattrs", data=b"x\n",
                 pax={"SCHILY.xattr.user.berth": "corpus", "SCHILY.xattr.user.empty": ""})
            .dir("opt/pax/xattr-dir", pax={"SCHILY.xattr.user.dir": "yes"})
            .add("opt/pax/unicode-\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9", data=b"utf-8 name\n")
            .add(long_name, data=b"deep\n", mode=0o600)
            .add("opt/pax/hard", tarfile.LNKTYPE, link=long_name)
            .add("opt/pax/link-long", tarfile.SYMTYPE, mode=0o777, link=LONG_TARGET)
            .add("opt/pax/big-ids", data=b"ids\n", uid=5_000_000, gid=5_000_001)
            .add("opt/pax/fraction", data=b"t\n", mtime=MTIME + 0.25)
            .add("opt/pax/noise", data=noise(5_000, "pax"), mode=0o755)
            .done())


def ustar_layer():
    # USTAR splits names up to 255 bytes into prefix (155) and name (100).
    prefixed = "opt/ustar/" + "p" * 120 + "/" + "n" * 90
    return (Layer(tarfile.USTAR_FORMAT)
            .dir("opt/")
            .dir("opt/ustar/")
            .add(prefixed, data=b"prefix and name\n")
            .add("opt/ustar/short", data=b"short\n", mode=0o600)
            .add("opt/ustar/hard", tarfile.LNKTYPE, link="opt/ustar/short")
            .add("opt/ustar/link", tarfile.SYMTYPE, mode=0o777, link="hard")
            .add("opt/ustar/sticky-dir", tarfile.DIRTYPE, mode=0o1777)
            .add("opt/ustar/last", data=noise(137, "ustar"), mode=0o640, uid=7, gid=8)
            .done())


def sparse_layer():
    """GNU tar's old-GNU sparse format, with more holes than fit in the header."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sparse")
        with open(path, "wb") as f:
            for i in range(8):
                f.seek(i * 256 * 1024)
                f.write(noise(3000, f"sparse{i}"))
            f.truncate(4 * 1024 * 1024)
        os.chmod(path, 0o644)
        out = subprocess.run(
            ["tar", "-C", tmp, "-c", "--sparse", "--format=gnu", f"--mtime=@{MTIME}",
             "--owner=0", "--group=0", "--numeric-owner", "sparse"],
            check=True, stdout=subprocess.PIPE, env={**os.environ, "LC_ALL": "C"})
        return out.stdout


def whiteout_layers():
    lower = (Layer(tarfile.PAX_FORMAT)
             .dir("a/").add("a/keep", data=b"keep\n").add("a/gone", data=b"gone\n")
             .dir("a/sub/").add("a/sub/x", data=b"x\n")
             .dir("b/").add("b/old1", data=b"1\n").add("b/old2", data=b"2\n").dir("b/olddir/")
             .dir("c/").add("c/y", data=b"y\n")
             .add("h1", data=b"linked\n").add("h2", tarfile.LNKTYPE, link="h1")
             .add("l", tarfile.SYMTYPE, mode=0o777, link="a/keep")
             .done())
    upper = (Layer(tarfile.PAX_FORMAT)
             .add("a/.wh.gone")
             .add("a/.wh.sub")
             .add("a/sub", data=b"a file where a dir was\n")
             .dir("b/")
             .add("b/.wh..wh..opq")
             .add("b/new", data=b"new\n")
             .add(".wh.c")
             .add(".wh.h1")
             .add("./.wh.l")
             .dir("./l", mode=0o750)
             .done())
    return lower, upper


def dotslash_layer():
    return (Layer(tarfile.GNU_FORMAT)
            .dir("./", mode=0o755)
            .dir("./etc/")
            .add("./etc/hostname", data=b"corpus\n")
            .add("./etc/hard", tarfile.LNKTYPE, link="./etc/hostname")
            .add("./etc/link", tarfile.SYMTYPE, mode=0o777, link="./hostname")
            .dir("./var//lib/./berth/")
            .done())


def slash_layer():
    """Names written with a leading `/` over the `./` layer (as `umoci insert ... /` does)."""
    return cut_after_data(
        Layer(tarfile.USTAR_FORMAT)
        .dir("/", mode=0o755)
        .dir("/etc/")
        .add("/etc/.wh.hostname")
        .add("/etc/motd", data=b"slash\n")
        .add("/etc/hard2", tarfile.LNKTYPE, link="/etc/motd")
        .dir("/var/lib/")
        .add("/var/lib/.wh..wh..opq")
        .add("/var/lib/new", data=noise(137, "slash"))
        .done())


def images():
    lower, upper = whiteout_layers()
    gnu, pax, ustar = gnu_layer(), pax_layer(), ustar_layer()
    return {
        "py-gnu": [(gnu, MT_GZIP)],
        "py-pax": [(pax, MT_TAR)],
        "py-ustar": [(ustar, MT_GZIP)],
        "py-no-trailer": [(without_trailer(gnu), MT_GZIP), (without_trailer(pax), MT_TAR)],
        "py-cut-after-data": [(cut_after_data(ustar), MT_TAR), (cut_after_data(pax), MT_GZIP)],
        "py-sparse": [(sparse_layer(), MT_GZIP)],
        "py-whiteout": [(lower, MT_GZIP), (upper, MT_GZIP)],
        "py-dotslash": [(dotslash_layer(), MT_GZIP), (slash_layer(), MT_GZIP)],
    }


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def put(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def write_image(layout, tag, layers):
    descriptors, diff_ids = [], []
    for tar_bytes, media_type in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
        blob = gzip.compress(tar_bytes, mtime=0) if media_type == MT_GZIP else tar_bytes
        descriptors.append({"mediaType": media_type, "digest": put(layout, blob), "size": len(blob)})
    config = canonical({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(layout, config), "size": len(config)},
        "layers": descriptors,
    })
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(layout, manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag}}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    layout = sys.argv[1]
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    manifests = [write_image(layout, tag, layers) for tag, layers in sorted(images().items())]
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(canonical({"schemaVersion": 2, "manifests": manifests}))
    for m in manifests:
        print(m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])


if __name__ == "__main__":
    main()
