//! `bindings.localstorage`: an output binding on the files under `rootPath`, compatible
//! with Dapr's.
//!
//! - `create` writes the request's data to `fileName` (a new UUID when absent), making
//!   the directories on the way, and answers `{"fileName": "<path relative to
//!   rootPath>"}`. As in Dapr, the data is first unquoted when it is one JSON string
//!   (what the HTTP API hands over for `"data": "text"`) and then base64-decoded when it
//!   is valid standard base64 — there is no request metadata to turn this on or off.
//! - `get` answers the file's bytes as they are.
//! - `list` answers a JSON array of the *absolute* paths of every file under the
//!   directory `fileName` (the root when absent), recursively and in lexical order,
//!   and `null` when there is none — as Dapr's.
//! - `delete` removes the file (or an empty directory) and answers nothing.
//!
//! `fileName` is joined to the root as Dapr's does since its path-traversal fix
//! (`securejoin`): `..` never climbs above the root and symbolic links are resolved
//! as if the root were `/`, so `../../etc/passwd` names `<rootPath>/etc/passwd`.
//! Like Dapr, `rootPath` is made absolute, its symbolic links are resolved, and
//! `/proc`, `/sys`, `/boot` and `/var/run/secrets` (and `/run/secrets`, which Dapr
//! misses where `/var/run` is a link to `/run`) are refused.
//!
//! Deliberate differences: `get` and `delete` without `fileName` are refused (Dapr
//! would read, or remove, the root directory itself), and a missing file is the
//! caller's error (not retried), named by its path relative to the root rather than
//! the server's absolute path.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{Binding, BindingError, InvokeRequest, InvokeResponse};

pub const METADATA: &[&str] = &["rootPath"];

const OPERATIONS: &[&str] = &["create", "get", "list", "delete"];

/// Roots Dapr refuses: kernel views, boot files, and Kubernetes' service-account
/// secrets.
/// `/run/secrets` too, where `/var/run` links to (Dapr compares the resolved path and
/// so misses it there).
const DISALLOWED_ROOTS: &[&str] = &["/proc", "/sys", "/boot", "/var/run/secrets", "/run/secrets"];

/// How many symbolic links one `fileName` may go through, as `securejoin`'s limit.
const MAX_LINKS: usize = 255;

/// Go's `base64.StdEncoding`: padding required, but bits after the last full byte
/// need not be zero (Go does not check them).
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// The local storage output binding.
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let text = metadata.required("rootPath")?;
        let root =
            resolve_root(Path::new(text)).map_err(|why| metadata.field_error("rootPath", why))?;
        tokio::fs::create_dir_all(&root).await.map_err(|error| {
            metadata.field_error(
                "rootPath",
                format!("unable to create directory {}: {error}", root.display()),
            )
        })?;
        Ok(Arc::new(Self { root }))
    }

    /// `fileName` inside the root, on a blocking thread (it reads links).
    async fn join(&self, file_name: &str) -> Result<PathBuf, BindingError> {
        let (root, name) = (self.root.clone(), file_name.to_owned());
        tokio::task::spawn_blocking(move || secure_join(&root, &name))
            .await
            .map_err(|error| BindingError::failed("resolving fileName", error))?
            .map_err(|error| BindingError::failed(format!("resolving {file_name}"), error))
    }

    fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    async fn create(&self, name: &str, data: &[u8]) -> Result<InvokeResponse, BindingError> {
        let data = decode_data(data);
        let path = self.join(name).await?;
        let relative = self.relative(&path).to_string_lossy().into_owned();
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|error| {
                BindingError::failed(format!("error creating the directory of {relative}"), error)
            })?;
        }
        tokio::fs::write(&path, &data)
            .await
            .map_err(|error| BindingError::failed(format!("error writing {relative}"), error))?;
        let answer = serde_json::json!({ "fileName": relative });
        Ok(InvokeResponse {
            data: answer.to_string().into(),
            metadata: Default::default(),
        })
    }

    async fn get(&self, name: &str) -> Result<InvokeResponse, BindingError> {
        let path = self.join(name).await?;
        let relative = self.relative(&path).display().to_string();
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(InvokeResponse {
                data: data.into(),
                metadata: Default::default(),
            }),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                Err(BindingError::Invalid(format!("file not found: {relative}")))
            }
            Err(error) => Err(BindingError::failed(
                format!("error reading {relative}"),
                error,
            )),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), BindingError> {
        let path = self.join(name).await?;
        let relative = self.relative(&path).display().to_string();
        let removed = match tokio::fs::symlink_metadata(&path).await {
            Ok(found) if found.is_dir() => tokio::fs::remove_dir(&path).await,
            _ => tokio::fs::remove_file(&path).await,
        };
        match removed {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                Err(BindingError::Invalid(format!("file not found: {relative}")))
            }
            Err(error) => Err(BindingError::failed(
                format!("error deleting {relative}"),
                error,
            )),
        }
    }

    async fn list(&self, name: &str) -> Result<InvokeResponse, BindingError> {
        let path = self.join(name).await?;
        let relative = self.relative(&path).display().to_string();
        let found = match tokio::fs::metadata(&path).await {
            Ok(found) => found,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(BindingError::Invalid(format!(
                    "directory not found: {relative}"
                )));
            }
            Err(error) => {
                return Err(BindingError::failed(
                    format!("error reading {relative}"),
                    error,
                ));
            }
        };
        if !found.is_dir() {
            return Err(BindingError::Invalid(format!(
                "unable to list files as the file specified is not a directory: {relative}"
            )));
        }
        let files = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            walk(&path, &mut files);
            files
        })
        .await
        .map_err(|error| BindingError::failed("listing files", error))?;
        // Go marshals an empty (nil) list as `null`.
        let answer = if files.is_empty() {
            serde_json::Value::Null
        } else {
            files.into()
        };
        Ok(InvokeResponse {
            data: answer.to_string().into(),
            metadata: Default::default(),
        })
    }
}

#[async_trait]
impl Binding for LocalStorage {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let name = request
            .metadata
            .get("fileName")
            .map(String::as_str)
            .unwrap_or_default();
        let required = || {
            if name.is_empty() {
                Err(BindingError::Invalid(format!(
                    "the {} operation needs the fileName metadata",
                    request.operation
                )))
            } else {
                Ok(name)
            }
        };
        match request.operation.as_str() {
            "create" => {
                let generated;
                let name = if name.is_empty() {
                    generated = uuid::Uuid::new_v4().to_string();
                    generated.as_str()
                } else {
                    name
                };
                self.create(name, &request.data).await.map(Some)
            }
            "get" => self.get(required()?).await.map(Some),
            "delete" => self.delete(required()?).await.map(|()| None),
            "list" => self.list(name).await.map(Some),
            _ => Err(BindingError::UnsupportedOperation {
                operation: request.operation,
                supported: OPERATIONS.to_vec(),
            }),
        }
    }
}

/// `create`'s data as Dapr writes it: unquoted when it is one JSON string, then
/// base64-decoded when it is valid standard base64 (Go ignores line breaks in it).
fn decode_data(data: &[u8]) -> Bytes {
    let mut data = Bytes::copy_from_slice(data);
    if data.len() >= 2 && data.first() == Some(&b'"') && data.last() == Some(&b'"') {
        if let Ok(text) = serde_json::from_slice::<String>(&data) {
            data = text.into();
        }
    } else if data.len() >= 2
        && data.first() == Some(&b'`')
        && data.last() == Some(&b'`')
        && !data[1..data.len() - 1].contains(&b'`')
    {
        // Go's raw string literal: the text between, carriage returns dropped.
        let inner: Vec<u8> = data[1..data.len() - 1]
            .iter()
            .copied()
            .filter(|byte| *byte != b'\r')
            .collect();
        data = inner.into();
    }
    let compact: Vec<u8> = data
        .iter()
        .copied()
        .filter(|byte| *byte != b'\r' && *byte != b'\n')
        .collect();
    match GO_STD_BASE64.decode(&compact) {
        Ok(decoded) => decoded.into(),
        Err(_) => data,
    }
}

/// `rootPath` made absolute, its existing part's symbolic links resolved, and checked
/// against the disallowed places.
fn resolve_root(path: &Path) -> Result<PathBuf, String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|error| format!("failed to obtain the current directory: {error}"))?
            .join(path)
    };
    let absolute = clean(&absolute);
    // The deepest ancestor that exists is resolved; the rest is yet to be made.
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match std::fs::metadata(existing) {
            Ok(found) if found.is_dir() => break,
            Ok(_) => return Err("rootPath represents a file and not a directory".into()),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                let Some(parent) = existing.parent() else {
                    break;
                };
                if let Some(name) = existing.file_name() {
                    rest.push(name.to_owned());
                }
                existing = parent;
            }
            Err(error) => return Err(format!("cannot read {}: {error}", existing.display())),
        }
    }
    let mut root = std::fs::canonicalize(existing)
        .map_err(|error| format!("failed to evaluate symlinks in rootPath: {error}"))?;
    for name in rest.iter().rev() {
        root.push(name);
    }
    if DISALLOWED_ROOTS
        .iter()
        .any(|bad| root.starts_with(Path::new(bad)))
    {
        return Err("rootPath points to a disallowed location".into());
    }
    Ok(root)
}

/// `.` and `..` taken out lexically, as Go's `filepath.Clean`.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `name` inside `root`, as `securejoin.SecureJoin`: each part is walked from the
/// root, `..` stops at the root, and a symbolic link met on the way is replaced by its
/// target, read as if `root` were `/`. The result never lies outside `root`.
fn secure_join(root: &Path, name: &str) -> std::io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = name.split('/').map(OsString::from).collect();
    let mut current: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part.is_empty() || part == "." {
            continue;
        }
        if part == ".." {
            current.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&current);
        candidate.push(&part);
        let is_link =
            std::fs::symlink_metadata(&candidate).is_ok_and(|found| found.file_type().is_symlink());
        if !is_link {
            current.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(std::io::Error::other(
                "too many symbolic links on the way to the file",
            ));
        }
        let target = std::fs::read_link(&candidate)?;
        let mut parts: Vec<OsString> = Vec::new();
        for piece in target.components() {
            match piece {
                Component::RootDir | Component::Prefix(_) => {
                    current.clear();
                    parts.clear();
                }
                Component::CurDir => {}
                Component::ParentDir => parts.push("..".into()),
                Component::Normal(text) => parts.push(text.to_owned()),
            }
        }
        for piece in parts.into_iter().rev() {
            pending.push_front(piece);
        }
    }
    let mut path = root.to_path_buf();
    path.extend(current);
    Ok(path)
}

/// Every non-directory under `dir`, recursively, in lexical order (links are not
/// followed; they are listed), as Go's `filepath.Walk`. Unreadable entries are
/// skipped.
fn walk(dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(&path, files),
            Ok(_) => files.push(path.to_string_lossy().into_owned()),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_unquoted_then_base64_decoded_as_dapr_does() {
        assert_eq!(decode_data(b"\"hello world\""), Bytes::from("hello world"));
        assert_eq!(decode_data(b"\"aGVsbG8=\""), Bytes::from("hello"));
        assert_eq!(decode_data(b"aGVsbG8="), Bytes::from("hello"));
        assert_eq!(decode_data(b"aGVsbG8"), Bytes::from("aGVsbG8"));
        assert_eq!(decode_data(b"{\"a\":1}"), Bytes::from("{\"a\":1}"));
        assert_eq!(decode_data(b"`raw`"), Bytes::from("raw"));
        assert_eq!(decode_data(b"\"bad \\q\""), Bytes::from("\"bad \\q\""));
    }

    #[test]
    fn secure_join_stays_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(
            secure_join(root, "../../etc/passwd").unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(secure_join(root, "a/./b/../c").unwrap(), root.join("a/c"));
        assert_eq!(secure_join(root, "/abs").unwrap(), root.join("abs"));
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert_eq!(
            secure_join(root, "link/passwd").unwrap(),
            root.join("etc/passwd")
        );
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        assert_eq!(secure_join(root, "up/x").unwrap(), root.join("x"));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(secure_join(root, "loop/x").is_err());
    }

    #[test]
    fn roots_are_absolute_and_some_are_refused() {
        assert!(resolve_root(Path::new("/proc/self")).is_err());
        assert!(resolve_root(Path::new("/var/run/secrets/x")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let wanted = std::fs::canonicalize(dir.path()).unwrap().join("a/b");
        assert_eq!(resolve_root(&dir.path().join("a/./b")).unwrap(), wanted);
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(resolve_root(&dir.path().join("file")).is_err());
    }
}
