//! File-system helpers: bounded reads of the files a user hands us, and atomic writes that
//! never replace anything but a regular file.

use std::io::{Error, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The largest model file read (`.safetensors` or `.pth`): the XL is 1 MB.
pub const MAX_MODEL_BYTES: u64 = 64 << 20;
/// The largest MIDI file read: a piano piece is tens of kilobytes, and reading one costs
/// about 18 times its size (a 15 MB file of notes: 272 MB), so 8 MB stays under 256 MB.
pub const MAX_MIDI_BYTES: u64 = 8 << 20;

/// Reads a regular file of at most `cap` bytes. A device, FIFO or directory (`/dev/zero`, a
/// named pipe) is refused before anything is read, a larger file before it is loaded, and a
/// file that grows while being read once it passes `cap`.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > cap {
        return Err(too_large(meta.len(), cap));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64, cap));
    }
    Ok(bytes)
}

fn too_large(len: u64, cap: u64) -> Error {
    Error::new(
        ErrorKind::InvalidData,
        format!(
            "the file holds {len} bytes, more than the {} MB this kind of file may have",
            cap >> 20
        ),
    )
}

/// Refuses a write target that exists and is not a regular file (a device node such as
/// `/dev/null`, a FIFO, a directory): renaming a finished file over it would replace it.
/// A read-only file is refused too: its owner protected it. Returns an existing file's
/// permissions, for the replacement to keep.
pub fn check_target(path: &Path) -> std::io::Result<Option<std::fs::Permissions>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().readonly() => Err(Error::new(
            ErrorKind::PermissionDenied,
            "the file is read-only; not replaced",
        )),
        Ok(meta) if meta.is_file() => Ok(Some(meta.permissions())),
        Ok(_) => Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a device, FIFO or directory); write to a file instead",
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`,
/// so readers see either the old file or the whole new one. `path` must be a regular file
/// or not exist ([`check_target`]); an existing file's permissions are kept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (tmp, mut file) = TempFile::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    tmp.commit()
}

/// The temporary files of this process now on disk, for [`exit_removing_temp_files`].
static TEMP_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A file written beside its target (`dir/.name.tmp<pid>`, on the same file system) and
/// renamed over it by [`TempFile::commit`] once complete, so the target holds either what it
/// held or the whole new file. Dropped uncommitted, it is removed; while it exists,
/// [`exit_removing_temp_files`] removes it too (the command calls that on SIGINT and SIGTERM).
pub struct TempFile {
    path: PathBuf,
    target: PathBuf,
    permissions: Option<std::fs::Permissions>,
    committed: bool,
}

impl TempFile {
    /// Checks the target ([`check_target`]) and creates the temporary file.
    pub fn create(target: &Path) -> std::io::Result<(TempFile, std::fs::File)> {
        let permissions = check_target(target)?;
        let path = temp_path(target);
        // registered before it exists, so that a signal arriving in between still finds it
        lock_temp_files().push(path.clone());
        let tmp = TempFile {
            path,
            target: target.to_path_buf(),
            permissions,
            committed: false,
        };
        let file = std::fs::File::create(&tmp.path)?;
        Ok((tmp, file))
    }

    /// Where the data is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the file the target's permissions, if it existed, and renames it over the
    /// target. The caller has written and synced it.
    pub fn commit(mut self) -> std::io::Result<()> {
        if let Some(p) = self.permissions.take() {
            std::fs::set_permissions(&self.path, p)?;
        }
        std::fs::rename(&self.path, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let mut files = lock_temp_files();
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
        files.retain(|p| *p != self.path);
    }
}

fn lock_temp_files() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // a panic elsewhere while holding the list leaves it valid: keep using it
    TEMP_FILES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes every temporary file this process has on disk and exits with `code`, holding
/// the list so that no new one appears in between: what a signal handler does.
pub fn exit_removing_temp_files(code: i32) -> ! {
    let files = lock_temp_files();
    for path in files.iter() {
        let _ = std::fs::remove_file(path);
    }
    std::process::exit(code)
}

/// `dir/.name.tmp<pid>` beside the target, on the same file system so rename is atomic.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}
