//! Export and import of the whole store as NDJSON: a header line, then one line per record,
//! `{"key": base64, "value": base64}` (standard base64 with padding), in key order. Importing an
//! export into a new data directory rebuilds the store without the space sled has not reclaimed,
//! so export, import and swap is also the offline compaction.

use std::io::{BufRead, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::keys;
use super::{Store, StoreError};

/// The `format` of an export's header line.
pub const EXPORT_FORMAT: &str = "bouncewatch-export";
/// Records written by one write job during an import.
const IMPORT_BATCH: usize = 1000;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub schema_version: u64,
    pub tree: String,
    pub exported_at: DateTime<Utc>,
    /// An id at least as large as any the exporting store handed out. The importing store
    /// hands out larger ids only, so new actions and queue entries never overwrite imported ones.
    pub next_id: u64,
}

/// One record line.
#[derive(Debug, Serialize, Deserialize)]
struct RecordLine {
    key: String,
    value: String,
}

/// An error that stops an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {detail}")]
    Invalid { line: usize, detail: String },
    #[error(
        "the export has schema version {found}, and this bouncewatch reads version {expected}; \
         import it with the bouncewatch version that wrote it"
    )]
    SchemaMismatch { found: u64, expected: u64 },
    #[error(
        "the store at {path} already holds {records} records; import only into a new data \
         directory (set data_dir or BOUNCEWATCH_DATA_DIR to an empty directory)"
    )]
    NotEmpty { path: String, records: usize },
    #[error("reading the export failed: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Totals of one import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Imported {
    pub records: u64,
}

/// Formats one record as an export line, with its newline.
pub fn record_line(key: &[u8], value: &[u8]) -> Vec<u8> {
    let line = RecordLine {
        key: STANDARD.encode(key),
        value: STANDARD.encode(value),
    };
    let mut bytes = serde_json::to_vec(&line).expect("a record line serializes");
    bytes.push(b'\n');
    bytes
}

impl Store {
    /// Returns the header line of an export of this store, with its newline.
    pub fn export_header(&self) -> Result<Vec<u8>, StoreError> {
        let header = ExportHeader {
            format: EXPORT_FORMAT.to_string(),
            schema_version: keys::SCHEMA_VERSION,
            tree: keys::TREE.to_string(),
            exported_at: Utc::now(),
            next_id: self.db.generate_id()?,
        };
        let mut bytes = serde_json::to_vec(&header).expect("the export header serializes");
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Iterates over every record of the tree in key order. The iteration is not a snapshot: records written
    /// while it runs may or may not appear.
    pub fn export_records(
        &self,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> {
        self.tree
            .iter()
            .map(|entry| entry.map_err(StoreError::from))
    }

    /// Writes a whole export to `out` and returns the number of records.
    pub fn write_export(&self, out: &mut impl Write) -> Result<u64, ImportError> {
        out.write_all(&self.export_header()?)?;
        let mut count = 0;
        for entry in self.export_records() {
            let (key, value) = entry?;
            out.write_all(&record_line(&key, &value))?;
            count += 1;
        }
        out.flush()?;
        Ok(count)
    }

    /// Records in the store, not counting the readiness probe's marker, which every running
    /// service writes and which carries no data.
    pub fn record_count(&self) -> Result<usize, StoreError> {
        let probe = keys::meta("readyz_probe");
        let mut count = 0;
        for key in self.tree.iter().keys() {
            if key? != probe.as_slice() {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Reads an export into this store, which must hold no records.
    pub async fn import(&self, input: impl BufRead) -> Result<Imported, ImportError> {
        let existing = self.record_count()?;
        if existing > 0 {
            return Err(ImportError::NotEmpty {
                path: self.path.display().to_string(),
                records: existing,
            });
        }
        let mut lines = input.lines();
        let header = match lines.next() {
            Some(line) => parse_header(&line?)?,
            None => {
                return Err(ImportError::Invalid {
                    line: 1,
                    detail: "the file is empty; expected the export header".into(),
                })
            }
        };

        let mut imported = Imported::default();
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        for (index, line) in lines.enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            batch.push(parse_record(&line, index + 2)?);
            if batch.len() == IMPORT_BATCH {
                imported.records += self.put_records(std::mem::take(&mut batch)).await?;
            }
        }
        imported.records += self.put_records(batch).await?;
        self.advance_ids(header.next_id)?;
        self.flush().await?;
        Ok(imported)
    }

    async fn put_records(&self, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<u64, StoreError> {
        let count = batch.len() as u64;
        if count == 0 {
            return Ok(0);
        }
        self.write(move |txn| {
            for (key, value) in batch {
                txn.put(key, value);
            }
        })
        .await?;
        Ok(count)
    }

    /// Draws ids until the generator has passed `next_id`. sled offers no way to set it, and
    /// drawing costs one atomic add per id plus a small write per million.
    fn advance_ids(&self, next_id: u64) -> Result<(), StoreError> {
        while self.db.generate_id()? <= next_id {}
        Ok(())
    }
}

fn parse_header(line: &str) -> Result<ExportHeader, ImportError> {
    let not_export = || ImportError::Invalid {
        line: 1,
        detail: format!(
            "the first line is not the header of a bouncewatch export (expected \
             {{\"format\": \"{EXPORT_FORMAT}\", \"schema_version\": …}}); was the file made \
             by `bouncewatch export`?"
        ),
    };
    // The format and version are checked before the rest, so an export of another schema
    // version is named as such even when its header has other fields.
    let value: serde_json::Value = serde_json::from_str(line).map_err(|_| not_export())?;
    if value.get("format").and_then(serde_json::Value::as_str) != Some(EXPORT_FORMAT) {
        return Err(not_export());
    }
    let version = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(keys::SCHEMA_VERSION) {
        return Err(ImportError::SchemaMismatch {
            found: version.unwrap_or(0),
            expected: keys::SCHEMA_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|err| ImportError::Invalid {
        line: 1,
        detail: format!("the export header is incomplete: {err}"),
    })
}

fn parse_record(line: &str, number: usize) -> Result<(Vec<u8>, Vec<u8>), ImportError> {
    let invalid = |detail: String| ImportError::Invalid {
        line: number,
        detail,
    };
    let record: RecordLine = serde_json::from_str(line)
        .map_err(|err| invalid(format!("expected {{\"key\": …, \"value\": …}}: {err}")))?;
    let key = STANDARD
        .decode(&record.key)
        .map_err(|err| invalid(format!("key is not valid base64: {err}")))?;
    let value = STANDARD
        .decode(&record.value)
        .map_err(|err| invalid(format!("value is not valid base64: {err}")))?;
    if key.is_empty() {
        return Err(invalid("key is empty".into()));
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_line_round_trips() {
        let line = record_line(b"e/u1", b"{\"a\":1}");
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with('\n'));
        let (key, value) = parse_record(text.trim_end(), 2).unwrap();
        assert_eq!(key, b"e/u1");
        assert_eq!(value, b"{\"a\":1}");
    }

    #[test]
    fn header_of_other_schema_is_rejected() {
        let line = format!("{{\"format\":\"{EXPORT_FORMAT}\",\"schema_version\":99}}");
        let err = parse_header(&line).unwrap_err();
        assert!(matches!(
            err,
            ImportError::SchemaMismatch {
                found: 99,
                expected: 1
            }
        ));
    }

    #[test]
    fn other_file_is_not_an_export() {
        let err = parse_header("{\"key\":\"ZQ==\",\"value\":\"\"}").unwrap_err();
        assert!(matches!(err, ImportError::Invalid { line: 1, .. }));
    }
}
