//! A small `multipart/form-data` reader: enough for message creation with `attachments[]` file parts.

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// One file part.
#[derive(Debug, Clone)]
pub(super) struct FilePart {
    pub name: String,
    pub filename: String,
    /// The part's own `Content-Type` header, if it had one.
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

/// A parsed form: text fields in order, and file parts.
#[derive(Debug, Clone, Default)]
pub(super) struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<FilePart>,
}

impl Form {
    /// A JSON picture of the form, for the request record (files as name, type and size).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (name, value) in &self.fields {
            put(&mut map, name, Value::String(value.clone()));
        }
        for file in &self.files {
            put(
                &mut map,
                &file.name,
                json!({"filename": file.filename, "content_type": file.content_type, "size": file.bytes.len()}),
            );
        }
        Value::Object(map)
    }
}

fn put(map: &mut Map<String, Value>, name: &str, value: Value) {
    if name.ends_with("[]") {
        match map.entry(name.to_owned()).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(items) => items.push(value),
            other => *other = Value::Array(vec![value]),
        }
    } else {
        map.insert(name.to_owned(), value);
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub(super) fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.trim().split_once('=')?;
        key.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..].windows(needle.len()).position(|w| w == needle).map(|at| at + from)
}

/// Parses a body; `None` when it is not a well-formed multipart body for `boundary`.
pub(super) fn parse(body: &Bytes, boundary: &str) -> Option<Form> {
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = format!("\r\n--{boundary}").into_bytes();
    let mut form = Form::default();
    let mut at = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(form);
        }
        if body.get(at..at + 2) != Some(b"\r\n") {
            return None;
        }
        let headers_start = at + 2;
        let headers_end = find(body, b"\r\n\r\n", headers_start)?;
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]).into_owned();
        let content_start = headers_end + 4;
        let content_end = find(body, &next_delimiter, content_start)?;
        let content = body.slice(content_start..content_end);
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else { continue };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                for param in value.split(';').skip(1) {
                    if let Some((k, v)) = param.trim().split_once('=') {
                        let v = v.trim().trim_matches('"').to_owned();
                        match k.trim() {
                            "name" => name = Some(v),
                            "filename" => filename = Some(v),
                            _ => {}
                        }
                    }
                }
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_owned());
            }
        }
        let name = name?;
        match filename {
            Some(filename) => form.files.push(FilePart { name, filename, content_type, bytes: content }),
            None => form.fields.push((name, String::from_utf8_lossy(&content).into_owned())),
        }
        at = content_end + next_delimiter.len();
    }
}
