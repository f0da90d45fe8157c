//! `multipart/form-data` bodies (image edits, audio uploads), read with axum's
//! `Multipart` extractor into text fields and file parts.

use axum::extract::{FromRequest, Multipart, Request};
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// One file part of a form.
#[derive(Debug)]
pub(crate) struct FilePart {
    /// The part's name (`file`, `image`, `image[]`, `mask`).
    pub field: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

/// A form: its text fields (as a JSON object of strings, the last of a
/// repeated name winning) and its file parts, in order.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub fields: Map<String, Value>,
    pub files: Vec<FilePart>,
}

impl Form {
    /// Reads the whole form. A part is a file if it has a filename or its name
    /// is one of `file_fields` (so `curl -F image=<raw` still counts); every
    /// other part is a text field (invalid UTF-8 replaced).
    pub(crate) async fn read(request: Request, file_fields: &[&str]) -> Result<Self, String> {
        let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| e.body_text())?;
        let mut form = Self::default();
        while let Some(field) = multipart.next_field().await.map_err(|e| e.body_text())? {
            let name = field.name().unwrap_or_default().to_owned();
            let filename = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let bytes = field.bytes().await.map_err(|e| e.body_text())?;
            if filename.is_some() || file_fields.contains(&name.as_str()) {
                form.files.push(FilePart { field: name, filename, content_type, bytes });
            } else {
                form.fields.insert(name, Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        Ok(form)
    }

    /// The file parts named any of `names`.
    pub(crate) fn files_named<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a FilePart> + 'a {
        self.files.iter().filter(move |f| names.contains(&f.field.as_str()))
    }

    /// The text fields, one per line, where knob directives are looked for.
    pub(crate) fn knob_text(&self) -> String {
        self.fields.values().filter_map(Value::as_str).collect::<Vec<_>>().join("\n")
    }

    /// What `/mock/stats` shows as `last_files`.
    pub(crate) fn files_summary(&self) -> Value {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|f| {
                json!({"field": f.field, "filename": f.filename, "content_type": f.content_type, "bytes": f.bytes.len()})
            })
            .collect();
        Value::Array(files)
    }
}
