//! `read_file` / `write_file`: only below a policy's roots, resolved by
//! the kernel with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)` from a descriptor of the root, so nothing is
//! normalised away and a symbolic link swapped in between a check and the
//! open cannot lead out: there is no separate check.
//!
//! Refused before anything is opened: absolute paths, `.` / `..` / empty
//! components, NUL, names over 255 bytes, paths over 4096 bytes, paths no
//! glob of the root matches. Refused while resolving: any symbolic link
//! (`ELOOP`), anything leaving the root (`EXDEV`). Refused after opening:
//! anything but a regular file, and files with more than one hard link
//! (a link to a file outside the root looks like any other file inside).
//!
//! `write_file` writes a temporary file in the same directory, fsyncs it
//! and renames it over the target (atomic create-or-replace), then fsyncs
//! the directory. It does not create directories.

use super::{Failure, Failure::*};
use palisade_policy::{FileAccess, FileRoot};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Checks a path as given, before the file system sees it.
pub(crate) fn check_relative<'p>(root: &FileRoot, path: &'p str) -> Result<Vec<&'p str>, Failure> {
    let refuse = |why: &str| Err(PathRefused(format!("path {path:?}: {why}")));
    if path.is_empty() {
        return refuse("is empty");
    }
    if path.len() > MAX_PATH {
        return refuse(&format!("is longer than {MAX_PATH} bytes"));
    }
    if path.contains('\0') {
        return refuse("contains NUL");
    }
    if path.starts_with('/') {
        return refuse("is absolute; give a path relative to the root");
    }
    let components: Vec<&str> = path.split('/').collect();
    for c in &components {
        match *c {
            "" => return refuse("has an empty component (// or a trailing /)"),
            "." | ".." => return refuse("has a . or .. component; paths are not normalised"),
            c if c.len() > MAX_NAME => {
                return refuse(&format!("has a component longer than {MAX_NAME} bytes"));
            }
            _ => {}
        }
    }
    if !root.allows(path) {
        return refuse(&format!("matches none of root {:?}'s globs", root.name));
    }
    Ok(components)
}

fn open_root(root: &FileRoot) -> Result<OwnedFd, Failure> {
    rustix::fs::open(
        root.path.as_str(),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failed(format!("root {:?} cannot be opened: {e}", root.name)))
}

fn resolve_error(path: &str, e: Errno) -> Failure {
    match e {
        Errno::LOOP => PathRefused(format!("path {path:?}: goes through a symbolic link")),
        Errno::XDEV => PathRefused(format!("path {path:?}: leads out of the root")),
        Errno::NOENT => Failed(format!("path {path:?}: no such file or directory")),
        Errno::NOTDIR => Failed(format!("path {path:?}: a component is not a directory")),
        Errno::NAMETOOLONG => PathRefused(format!("path {path:?}: name too long")),
        Errno::NOSYS => Failed(
            "this kernel has no openat2 (Linux 5.6 or later is needed); file tools are refused"
                .into(),
        ),
        e => Failed(format!("path {path:?}: {e}")),
    }
}

/// A regular file with one link, or the reason it is refused.
fn check_file(path: &str, mode: u32, nlink: u64) -> Result<(), Failure> {
    if FileType::from_raw_mode(mode) != FileType::RegularFile {
        return Err(PathRefused(format!("path {path:?}: not a regular file")));
    }
    if nlink > 1 {
        return Err(PathRefused(format!(
            "path {path:?}: the file has {nlink} hard links; only files with one are used"
        )));
    }
    Ok(())
}

/// Reads `path` below `root`, at most `max` bytes.
pub(crate) fn read(root: &FileRoot, path: &str, max: u64) -> Result<Vec<u8>, Failure> {
    check_relative(root, path)?;
    let dir = open_root(root)?;
    let fd = rustix::fs::openat2(
        &dir,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        resolve(),
    )
    .map_err(|e| resolve_error(path, e))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| Failed(format!("path {path:?}: {e}")))?;
    check_file(path, stat.st_mode, stat.st_nlink)?;
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > max {
        return Err(TooLarge(format!(
            "file {path:?} has {size} bytes; read_file reads at most {max}"
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failed(format!("file {path:?}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(TooLarge(format!(
            "file {path:?} grew past {max} bytes while being read"
        )));
    }
    Ok(bytes)
}

/// Creates or replaces `path` below `root` with `content`.
pub(crate) fn write(root: &FileRoot, path: &str, content: &[u8], max: u64) -> Result<(), Failure> {
    if root.access != FileAccess::ReadWrite {
        return Err(PathRefused(format!(
            "root {:?} is Read; write_file needs a ReadWrite root",
            root.name
        )));
    }
    let components = check_relative(root, path)?;
    if content.len() as u64 > max {
        return Err(TooLarge(format!(
            "content has {} bytes; write_file writes at most {max}",
            content.len()
        )));
    }
    let (name, parents) = components
        .split_last()
        .ok_or_else(|| PathRefused(format!("path {path:?}: is empty")))?;
    let dir = open_root(root)?;
    let parent = if parents.is_empty() {
        dir
    } else {
        rustix::fs::openat2(
            &dir,
            parents.join("/").as_str(),
            // RESOLVE_NO_SYMLINKS refuses a link in any component (ELOOP).
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        )
        .map_err(|e| resolve_error(path, e))?
    };
    // What is there now, without following it: a link or a hard-linked
    // file is refused rather than replaced.
    match rustix::fs::statat(&parent, *name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                return Err(PathRefused(format!("path {path:?}: is a symbolic link")));
            }
            check_file(path, st.st_mode, st.st_nlink)?;
        }
        Err(Errno::NOENT) => {}
        Err(e) => return Err(resolve_error(path, e)),
    }
    let temp = format!(".palisade-{}.tmp", uuid::Uuid::new_v4().simple());
    let written = (|| {
        let fd = rustix::fs::openat(
            &parent,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o640),
        )?;
        let mut file = std::fs::File::from(fd);
        file.write_all(content).map_err(io_errno)?;
        file.sync_all().map_err(io_errno)?;
        rustix::fs::renameat(&parent, temp.as_str(), &parent, *name)?;
        rustix::fs::fsync(&parent)
    })();
    written.map_err(|e| {
        let _ = rustix::fs::unlinkat(&parent, temp.as_str(), AtFlags::empty());
        Failed(format!("file {path:?} could not be written: {e}"))
    })
}

fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error)
}
