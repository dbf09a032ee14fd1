//! The architecture strings of layer-wise spaces: fields joined by `-`, each a prefix and one
//! entry per choice, e.g. Once-for-All's `r224-d23443-k3573...-e4636...` or an FBNet
//! `b:k3_e1.k5_e6.skip...`. A field whose values are all single digits writes them side by
//! side; any other joins them with `.`.

/// One field: `prefix` then an entry per gene.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub prefix: &'static str,
    /// Each entry's choices as written, in gene-level order.
    pub entries: Vec<Vec<String>>,
    /// Neighbouring choices are related (sizes, depths), so mutation may step between them.
    pub ordered: bool,
}

impl Field {
    fn digits(&self) -> bool {
        self.entries
            .iter()
            .flatten()
            .all(|v| v.len() == 1 && v.as_bytes()[0].is_ascii_digit())
    }

    fn write(&self, genes: &[u8]) -> String {
        let values = self
            .entries
            .iter()
            .zip(genes)
            .map(|(choices, &g)| choices[g as usize].as_str());
        let body: Vec<&str> = values.collect();
        let sep = if self.digits() { "" } else { "." };
        format!("{}{}", self.prefix, body.join(sep))
    }

    fn read(&self, field: &str) -> Result<Vec<u8>, String> {
        let body = field
            .strip_prefix(self.prefix)
            .ok_or_else(|| format!("`{field}` must start with `{}`", self.prefix))?;
        let values: Vec<String> = if self.digits() {
            body.chars().map(String::from).collect()
        } else {
            body.split('.').map(String::from).collect()
        };
        if values.len() != self.entries.len() {
            return Err(format!(
                "`{}` needs {} entries, found {} in `{body}`",
                self.prefix,
                self.entries.len(),
                values.len()
            ));
        }
        values
            .iter()
            .zip(&self.entries)
            .enumerate()
            .map(|(i, (v, choices))| {
                choices
                    .iter()
                    .position(|c| c == v)
                    .map(|p| p as u8)
                    .ok_or_else(|| {
                        format!(
                            "`{}` entry {} is `{v}`, not one of {}",
                            self.prefix,
                            i + 1,
                            choices.join(", ")
                        )
                    })
            })
            .collect()
    }
}

/// The fields of a space, in genome order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Layout {
    pub fields: Vec<Field>,
}

impl Layout {
    pub fn push(&mut self, field: Field) {
        if !field.entries.is_empty() {
            self.fields.push(field);
        }
    }

    pub fn levels(&self) -> Vec<(u8, bool)> {
        self.fields
            .iter()
            .flat_map(|f| f.entries.iter().map(move |e| (e.len() as u8, f.ordered)))
            .collect()
    }

    pub fn write(&self, genome: &[u8]) -> String {
        let mut at = 0;
        let mut parts = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            parts.push(f.write(&genome[at..at + f.entries.len()]));
            at += f.entries.len();
        }
        parts.join("-")
    }

    pub fn read(&self, arch: &str) -> Result<Vec<u8>, String> {
        let arch = arch.trim();
        let parts: Vec<&str> = if arch.is_empty() {
            vec![]
        } else {
            arch.split('-').collect()
        };
        if parts.len() != self.fields.len() {
            let prefixes: Vec<&str> = self.fields.iter().map(|f| f.prefix).collect();
            return Err(format!(
                "expected {} fields joined by `-` (prefixes {}), found {}",
                self.fields.len(),
                prefixes.join(" "),
                parts.len()
            ));
        }
        let mut genome = Vec::new();
        for (f, part) in self.fields.iter().zip(parts) {
            genome.extend(f.read(part)?);
        }
        Ok(genome)
    }
}
