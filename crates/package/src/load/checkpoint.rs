//! `checkpoint = { file, usage }` in `[package]`.

use std::path::PathBuf;

use super::reader::{Fields, Reader, Value};
use crate::model::{CheckpointSettings, CheckpointUsage};

/// Reads the inline table; `None` (with the errors recorded) when it is not usable.
pub(crate) fn read(reader: &mut Reader<'_>, value: &Value<'_>, path: &str) -> Option<CheckpointSettings> {
    let table = reader.table(value, path)?;
    let mut fields = Fields::new(table, value.span(), path);
    let file = fields
        .require(reader, "file", "the checkpoint file, relative to the package's folder")
        .and_then(|v| reader.non_empty_string(v, &format!("{path}.file")));
    let usage = match fields.take("usage") {
        None => Some(CheckpointUsage::Never),
        Some(v) => {
            let field = format!("{path}.usage");
            match reader.string(v, &field) {
                Some(name) => match CheckpointUsage::parse(&name) {
                    Some(usage) => Some(usage),
                    None => {
                        let expected = CheckpointUsage::NAMES.join(", ");
                        reader.error(&v.span(), &field, format!("unknown usage \"{name}\" (expected {expected})"));
                        None
                    }
                },
                None => None,
            }
        }
    };
    fields.finish(reader, "in checkpoint (expected file, usage)");
    Some(CheckpointSettings { file: PathBuf::from(file?), usage: usage? })
}
