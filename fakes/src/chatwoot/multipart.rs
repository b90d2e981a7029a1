//! `multipart/form-data` bodies of message creation (`attachments[]` file parts), read by actix-web's own
//! parser (actix-multipart) into a [`Form`].

use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use bytes::Bytes;
use futures_util::StreamExt;
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

/// Parses a body by its request's `Content-Type` (and boundary); `None` when it is not a well-formed
/// `multipart/form-data` body, or a part has no `form-data` disposition with a name.
pub(super) async fn parse(headers: &HeaderMap, body: Bytes) -> Option<Form> {
    // No part is longer than the body, which is already in memory.
    let limit = body.len();
    let mut parts = actix_multipart::Multipart::new(headers, futures_util::stream::iter([Ok::<_, PayloadError>(body)]));
    let mut form = Form::default();
    while let Some(part) = parts.next().await {
        let mut part = part.ok()?;
        let name = part.name()?.to_owned();
        // As Rack: `filename*` (RFC 5987) before `filename`.
        let filename = part.content_disposition().and_then(|cd| {
            cd.get_filename_ext()
                .map(|ext| String::from_utf8_lossy(&ext.value).into_owned())
                .or_else(|| cd.get_filename().map(str::to_owned))
        });
        let content_type =
            part.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
        let bytes = part.bytes(limit).await.ok()?.ok()?;
        match filename {
            // Rack drops a file part with an empty file name (no file was chosen).
            Some(filename) if filename.is_empty() => {}
            Some(filename) => form.files.push(FilePart { name, filename, content_type, bytes }),
            None => form.fields.push((name, String::from_utf8_lossy(&bytes).into_owned())),
        }
    }
    Some(form)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    const BOUNDARY: &str = "ryze-b0und4ry";

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("multipart/form-data; boundary={BOUNDARY}");
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn part(disposition: &str, content_type: Option<&str>, content: &str) -> String {
        let content_type = content_type.map(|ct| format!("Content-Type: {ct}\r\n")).unwrap_or_default();
        format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{content_type}\r\n{content}\r\n")
    }

    async fn parsed(parts: &[String], end: &str) -> Option<Form> {
        parse(&headers(), Bytes::from(format!("{}{end}", parts.concat()))).await
    }

    #[actix_web::test]
    async fn fields_and_files_come_out_in_order() {
        let form = parsed(
            &[
                part("form-data; name=\"content\"", Some("text/plain"), "olá"),
                part("form-data; name=\"private\"", None, "false"),
                part("form-data; name=\"attachments[]\"; filename=\"a b.ogg\"", Some("audio/ogg; codecs=opus"), "OggS"),
            ],
            &format!("--{BOUNDARY}--\r\n"),
        )
        .await
        .unwrap();
        assert_eq!(form.fields, [("content".into(), "olá".into()), ("private".into(), "false".into())]);
        let file = &form.files[0];
        assert_eq!((file.name.as_str(), file.filename.as_str()), ("attachments[]", "a b.ogg"));
        assert_eq!((file.content_type.as_deref(), &file.bytes[..]), (Some("audio/ogg; codecs=opus"), &b"OggS"[..]));
        assert_eq!(form.to_json()["attachments[]"][0]["size"], 4);
    }

    #[actix_web::test]
    async fn rack_file_names_empty_ones_are_dropped_and_the_extended_one_wins() {
        let form = parsed(
            &[
                part("form-data; name=\"attachments[]\"; filename=\"\"", None, ""),
                part(
                    "form-data; name=\"attachments[]\"; filename=\"x.pdf\"; filename*=UTF-8''rel%C3%B3rio.pdf",
                    None,
                    "%PDF",
                ),
            ],
            &format!("--{BOUNDARY}--"),
        )
        .await
        .unwrap();
        assert_eq!(form.files.len(), 1);
        assert_eq!((form.files[0].filename.as_str(), form.files[0].content_type.as_deref()), ("relório.pdf", None));
    }

    #[actix_web::test]
    async fn malformed_bodies_are_none() {
        let field = part("form-data; name=\"content\"", None, "hi");
        assert!(parsed(std::slice::from_ref(&field), "").await.is_none(), "no closing boundary");
        assert!(parsed(&[part("form-data", None, "hi")], &format!("--{BOUNDARY}--")).await.is_none(), "no name");
        assert!(parse(&HeaderMap::new(), Bytes::from(field)).await.is_none(), "no boundary");
    }
}
