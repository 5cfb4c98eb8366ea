//! Files and directories of records.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{parse_record, IngestError, IngestedEvent};

/// Environment variable naming the shared data directory when it is not beside the workspace.
pub const DATA_DIR_ENV: &str = "SCOUTSTREAM_DATA_DIR";

/// File extensions [`ingest_dir`] reads; anything else is skipped unread.
const JSON_EXTENSIONS: [&str; 3] = ["json", "jsonl", "ndjson"];

/// What [`ingest_dir`] did with each file of a directory.
#[derive(Debug, Default)]
pub struct DirIngest {
    /// Files read completely, in path order.
    pub files: Vec<IngestedFile>,
    /// Files left out, in path order, with the reason.
    pub skipped: Vec<SkippedFile>,
}

#[derive(Debug)]
pub struct IngestedFile {
    pub path: PathBuf,
    pub events: Vec<IngestedEvent>,
}

#[derive(Debug)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: SkipReason,
}

#[derive(Debug)]
pub enum SkipReason {
    /// Not a regular file with a JSON extension (`.json`, `.jsonl`, `.ndjson`).
    NotJsonFile,
    /// Read, but not ingestible; the error names the line at fault.
    Rejected(IngestError),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJsonFile => f.write_str("not a .json, .jsonl or .ndjson file"),
            Self::Rejected(error) => write!(f, "{error}"),
        }
    }
}

impl DirIngest {
    /// Every event of every ingested file, in path order.
    pub fn events(&self) -> impl Iterator<Item = &IngestedEvent> {
        self.files.iter().flat_map(|file| &file.events)
    }
}

/// Reads every record of a file: one JSON document, or many (JSON lines, or
/// documents one after another). All or nothing: the first bad record fails the
/// file, with its line, so a file is never half ingested.
pub fn ingest_file(
    path: impl AsRef<Path>,
    observed_at_ms: i64,
) -> Result<Vec<IngestedEvent>, IngestError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|error| IngestError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    parse_records(&bytes, path, observed_at_ms)
}

/// Ingests each JSON file directly in `dir` (not in subdirectories), in path order,
/// and reports the files it skipped. Fails only when `dir` itself cannot be listed.
pub fn ingest_dir(dir: impl AsRef<Path>, observed_at_ms: i64) -> Result<DirIngest, IngestError> {
    let mut report = DirIngest::default();
    for path in sorted_entries(dir.as_ref())? {
        if !is_json_file(&path) {
            report.skipped.push(SkippedFile {
                path,
                reason: SkipReason::NotJsonFile,
            });
            continue;
        }
        match ingest_file(&path, observed_at_ms) {
            Ok(events) => report.files.push(IngestedFile { path, events }),
            Err(error) => report.skipped.push(SkippedFile {
                path,
                reason: SkipReason::Rejected(error),
            }),
        }
    }
    Ok(report)
}

/// The shared real-data directory (`shared/data` beside the workspace), or
/// `$SCOUTSTREAM_DATA_DIR` when the workspace has none beside it (e.g. in a container).
pub fn shared_data_dir() -> PathBuf {
    let beside_workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(|root| root.join("shared").join("data"));
    match (beside_workspace, std::env::var_os(DATA_DIR_ENV)) {
        (Some(dir), _) if dir.is_dir() => dir,
        (_, Some(from_env)) => PathBuf::from(from_env),
        // Neither exists: return the default so the caller's error names a real path.
        (Some(dir), None) => dir,
        (None, None) => PathBuf::from("shared/data"),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let io_error = |error| IngestError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut paths = fs::read_dir(dir)
        .map_err(io_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    paths.sort();
    Ok(paths)
}

fn is_json_file(path: &Path) -> bool {
    let has_json_extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| JSON_EXTENSIONS.iter().any(|j| ext.eq_ignore_ascii_case(j)));
    has_json_extension && path.is_file()
}

/// Parses the JSON values of `bytes` one after another, so one pretty-printed
/// document and JSON lines need no format sniffing, and errors carry real lines.
fn parse_records(
    bytes: &[u8],
    path: &Path,
    observed_at_ms: i64,
) -> Result<Vec<IngestedEvent>, IngestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let mut lines = LineCounter::default();
    let mut events = Vec::new();
    loop {
        let start = skip_whitespace(bytes, stream.byte_offset());
        let value = match stream.next() {
            None => return Ok(events),
            Some(Ok(value)) => value,
            Some(Err(error)) => {
                let line = error.line();
                return Err(IngestError::Json(error).at(path, line));
            }
        };
        let line = lines.line_at(bytes, start);
        let parsed = parse_record(&value, observed_at_ms).map_err(|e| e.at(path, line))?;
        events.extend(parsed);
    }
}

fn skip_whitespace(bytes: &[u8], from: usize) -> usize {
    let rest = bytes.get(from..).unwrap_or_default();
    from + rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// 1-based line numbers of increasing byte offsets, counted once.
struct LineCounter {
    offset: usize,
    line: usize,
}

impl Default for LineCounter {
    fn default() -> Self {
        Self { offset: 0, line: 1 }
    }
}

impl LineCounter {
    fn line_at(&mut self, bytes: &[u8], offset: usize) -> usize {
        let passed = bytes.get(self.offset..offset).unwrap_or_default();
        self.line += passed.iter().filter(|b| **b == b'\n').count();
        self.offset = offset;
        self.line
    }
}
