//! Joining the shards of one device's table, and writing a table whole.

use super::*;

/// Provenance fields that may differ between the shards of one table: which shard, from which
/// scheduler's task, on which of a farm's identical devices, reached how. Each shard's device
/// measured its own probe time; the merged rows are put at the first shard's.
const SHARD_KEYS: [&str; 5] = [
    "shard",
    "shard_from",
    "remote",
    "remote_hostname",
    PROBE_NOMINAL_META,
];

impl LatencyTable {
    /// One table from the shards of one: every provenance field (but the volatile ones and the
    /// shard) must agree and no op may appear twice, unless `force` (then the first row of an
    /// op is kept and the first table's provenance wins).
    pub fn merge(
        parts: &[(PathBuf, LatencyTable)],
        force: bool,
    ) -> Result<LatencyTable, TableError> {
        let Some((first_path, first)) = parts.first() else {
            return Ok(LatencyTable {
                meta: Metadata::new(),
                rows: Vec::new(),
            });
        };
        let compared = |k: &str| !VOLATILE.contains(&k) && !SHARD_KEYS.contains(&k);
        if !force {
            for (path, t) in &parts[1..] {
                let keys = first.meta.iter().chain(&t.meta).map(|(k, _)| k.as_str());
                for k in keys.filter(|k| compared(k)) {
                    let (a, b) = (
                        first.meta(k).unwrap_or("(absent)"),
                        t.meta(k).unwrap_or("(absent)"),
                    );
                    if a != b {
                        return Err(TableError::MergeMismatch {
                            a: first_path.clone(),
                            b: path.clone(),
                            field: k.into(),
                            found_a: a.into(),
                            found_b: b.into(),
                        });
                    }
                }
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        let mut from: std::collections::HashMap<String, &Path> = std::collections::HashMap::new();
        let nominal =
            |t: &LatencyTable| -> Option<f64> { t.meta(PROBE_NOMINAL_META)?.parse().ok() };
        for (path, t) in parts {
            let scale = match (nominal(first), nominal(t)) {
                (Some(a), Some(b)) if b > 0.0 => a / b,
                _ => 1.0,
            };
            for row in &t.rows {
                if let Some(earlier) = from.get(&row.key) {
                    if force {
                        continue;
                    }
                    return Err(TableError::MergeDuplicate {
                        key: row.key.clone(),
                        a: earlier.to_path_buf(),
                        b: path.clone(),
                    });
                }
                from.insert(row.key.clone(), path);
                rows.push(row.clone().scaled(scale));
            }
        }
        let mut meta: Metadata = first
            .meta
            .iter()
            .filter(|(k, _)| {
                k != SCHEMA_KEY && (k == PROBE_NOMINAL_META || !SHARD_KEYS.contains(&k.as_str()))
            })
            .cloned()
            .collect();
        let names: Vec<String> = parts.iter().map(|(p, _)| p.display().to_string()).collect();
        meta.push(("merged_from".into(), names.join(" ")));
        Ok(LatencyTable { meta, rows })
    }

    /// Writes the table atomically: a temporary file beside `path`, then a rename.
    pub fn write(&self, path: &Path) -> Result<(), TableError> {
        let tmp = crate::files::temporary(path);
        let mut w = TableWriter::create(&tmp, &self.meta)?;
        for row in &self.rows {
            w.append(row)?;
        }
        drop(w);
        std::fs::rename(&tmp, path).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
