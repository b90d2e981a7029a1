//! Fuzz target: both formatting converters (`ryze_wire::format`) on any text, with properties that hold
//! for every input: plain text passes unchanged, and output length is bounded linearly by the input
//! (a quadratic blow-up was found in these converters once; large inputs run with `-max_len` raised).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ryze_wire::format::{markdown_to_whatsapp, whatsapp_to_markdown};

fuzz_target!(|data: &[u8]| {
    // Both come from JSON strings (a webhook's `content`, a frame's `content`/caption): always UTF-8.
    let Ok(text) = std::str::from_utf8(data) else { return };

    // Agent reply → WhatsApp: markers only shrink or keep their length, links become their URL.
    let whatsapp = markdown_to_whatsapp(text);
    assert!(whatsapp.len() <= text.len(), "markdown_to_whatsapp grew {} → {} bytes", text.len(), whatsapp.len());
    if !text.contains(['*', '_', '~', '[', '`']) {
        assert_eq!(whatsapp, text, "plain text was altered");
    }

    // WhatsApp → Chatwoot: each `*x*`/`~x~` span (3+ bytes) gains 2 bytes per pass, two passes.
    let markdown = whatsapp_to_markdown(text);
    assert!(markdown.len() <= 3 * text.len(), "whatsapp_to_markdown grew {} → {} bytes", text.len(), markdown.len());
    if !text.contains(['*', '~']) {
        assert_eq!(markdown, text, "plain text was altered");
    }
});
