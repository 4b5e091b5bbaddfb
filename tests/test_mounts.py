"""The mount adapter against real bind and overlay mounts in tmp_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cachesync import mounts
from cachesync.errors import MountError

LINE_BIND = ("512 27 8:1 /srv/data /tmp/x\\040y rw,relatime shared:7 master:2 - ext4 /dev/sda1 "
             "rw,errors=remount-ro")
LINE_OVERLAY = ("600 27 0:55 / /var/lib/s/overlay/abc/merged rw,relatime - overlay overlay "
                "rw,lowerdir=/l1:/l2,upperdir=/var/lib/s/overlay/abc/diff,workdir=/w")


@pytest.mark.parametrize("line,field,expected", [
    (LINE_BIND, "mountpoint", "/tmp/x y"),
    (LINE_BIND, "root", "/srv/data"),
    (LINE_BIND, "device", "8:1"),
    (LINE_BIND, "optional", ("shared:7", "master:2")),
    (LINE_BIND, "shared", True),
    (LINE_BIND, "fstype", "ext4"),
    (LINE_BIND, "source", "/dev/sda1"),
    (LINE_OVERLAY, "optional", ()),
    (LINE_OVERLAY, "shared", False),
    (LINE_OVERLAY, "fstype", "overlay"),
])
def test_parse_mountinfo(line, field, expected):
    [entry] = mounts.parse_mountinfo(line + "\n")
    assert getattr(entry, field) == expected


@pytest.mark.parametrize("option,expected", [
    ("upperdir", "/var/lib/s/overlay/abc/diff"), ("lowerdir", "/l1:/l2"), ("index", None),
])
def test_super_option(option, expected):
    [entry] = mounts.parse_mountinfo(LINE_OVERLAY)
    assert entry.super_option(option) == expected


def test_parse_skips_garbage():
    assert mounts.parse_mountinfo("not a mountinfo line\n\n") == []


@pytest.fixture
def dirs(tmp_path, requires_root):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "file").write_text("hello")
    return src, dst


def test_bind_shared_and_umount(dirs):
    src, dst = dirs
    assert not mounts.is_mountpoint(dst)
    mounts.bind(src, dst)
    assert mounts.is_mountpoint(dst)
    assert (dst / "file").read_text() == "hello"
    mounts.make_rshared(dst)
    assert mounts.find_mount(dst).shared
    mounts.umount(dst)
    assert not mounts.is_mountpoint(dst)
    assert not (dst / "file").exists()


def test_find_mount_device_matches_source(dirs):
    src, dst = dirs
    mounts.bind(src, dst)
    try:
        st = os.stat(dst)
        major, minor = mounts.find_mount(dst).device.split(":")
        assert (int(major), int(minor)) == (os.major(st.st_dev), os.minor(st.st_dev))
    finally:
        mounts.umount(dst)


def test_errors_name_the_path(dirs, tmp_path):
    src, dst = dirs
    with pytest.raises(MountError, match="No such file or directory") as e:
        mounts.bind(tmp_path / "missing", dst)
    assert str(tmp_path / "missing") in str(e.value)
    with pytest.raises(MountError, match="unmount .*dst: Invalid argument"):
        mounts.umount(dst)
    assert isinstance(e.value.__cause__, OSError)


def test_unmount_all_stacked_and_nested(dirs, tmp_path):
    src, dst = dirs
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    mounts.bind(src, dst)
    (dst / "sub").mkdir()
    mounts.bind(other, dst / "sub")    # nested below dst
    mounts.bind(other, dst)            # stacked on dst, hiding the nested one
    assert len(mounts.mounts_under(dst)) == 3
    assert mounts.unmount_all(dst) == 3
    assert mounts.mounts_under(tmp_path) == []
    assert mounts.unmount_all(dst) == 0


def test_mounts_under_is_deepest_first(dirs, tmp_path):
    src, dst = dirs
    (src / "sub").mkdir()
    mounts.bind(src, dst)
    mounts.bind(src, dst / "sub")
    try:
        assert [m.mountpoint for m in mounts.mounts_under(dst)] == [str(dst / "sub"), str(dst)]
        assert mounts.mounts_under(tmp_path / "ds") == []   # a prefix of a name is not below
    finally:
        mounts.unmount_all(dst)


def test_busy_mount_is_detached_lazily(dirs):
    src, dst = dirs
    mounts.bind(src, dst)
    fd = os.open(dst, os.O_RDONLY)     # a process sitting in the volume
    try:
        os.fchdir(fd)
        cwd = os.getcwd()
        assert mounts.unmount_all(dst) == 1
        assert not mounts.is_mountpoint(dst)
    finally:
        os.chdir("/")
        os.close(fd)
    assert cwd == str(dst)


def test_overlay_upperdir(tmp_path, requires_root):
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "base").write_text("b")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], check=True)
    try:
        assert mounts.overlay_upperdir(merged) == upper
        (merged / "new").write_text("n")
        assert (upper / "new").read_text() == "n" and not (lower / "new").exists()
        assert mounts.overlay_upperdir(lower) is None     # not a mount point
    finally:
        mounts.umount(merged)
    assert mounts.overlay_upperdir(merged) is None


def test_bind_of_non_overlay_has_no_upperdir(dirs):
    src, dst = dirs
    mounts.bind(src, dst)
    try:
        assert mounts.overlay_upperdir(dst) is None
    finally:
        mounts.umount(dst)


def test_paths_with_spaces(tmp_path, requires_root):
    src, dst = tmp_path / "a src", tmp_path / "a dst"
    src.mkdir()
    dst.mkdir()
    mounts.bind(src, dst)
    try:
        assert mounts.find_mount(dst).mountpoint == str(dst)
    finally:
        mounts.umount(dst)
    assert not mounts.is_mountpoint(Path(str(dst)))
