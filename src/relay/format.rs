//! WhatsApp formatting ⇄ Chatwoot Markdown.
//!
//! WhatsApp marks `*bold*`, `_italic_`, `~strike~` and ```` ```mono``` ````; Chatwoot renders Markdown, where
//! bold is `**b**` and strike `~~s~~` (`_i_` and code already agree).

/// Longest formatted span or link looked for, in characters, on one line. Bounds the work per marker:
/// a 150,000-character message full of `*` or `[` stays linear instead of quadratic.
const MAX_SPAN: usize = 256;
/// Deepest nesting of formatting converted (`**_~~x~~_**`); deeper markers are left as they are.
const MAX_NESTING: usize = 3;

/// Chatwoot Markdown → WhatsApp formatting (contract §5): `**b**`/`__b__` → `*b*`, `*i*`/`_i_` → `_i_`,
/// `~~s~~` → `~s~`, `[text](url)` → the URL. Code spans are left as they are.
pub fn markdown_to_whatsapp(markdown: &str) -> String {
    convert_markdown(markdown, 0)
}

/// An agent's text as Chatwoot 4.9–4.12 deliver it, repaired: the dashboard editor stores a line break as
/// `\` + newline and leaves trailing newlines, and those releases put the stored text in the webhook
/// (upstream issues #13458, #13459). Does what the later `Messages::WebhookContentNormalizer` does
/// (PR #13950: `gsub(/\\\r?\n/, "\n")`, then trailing newlines dropped), so it changes nothing on a
/// release that already did it.
pub fn normalize_agent_text(text: &str) -> String {
    let joined = text.replace("\\\r\n", "\n").replace("\\\n", "\n");
    joined.trim_end_matches(['\r', '\n']).to_owned()
}

/// Text for an `outgoing` Chatwoot message that Liquid leaves as it is. Chatwoot renders Liquid in every
/// outgoing message it creates (`app/models/concerns/liquidable.rb`), protecting only code spans, which it
/// wraps in `{% raw %}` itself (`` content.gsub(/`(.*?)`/m, …) ``): a message typed on the phone with
/// `{{…}}` or `{%…%}` in it would be changed in Chatwoot, or refused with a Liquid syntax error. Every
/// stretch outside code spans that holds a Liquid marker goes into a raw block of its own (never around a
/// code span, whose own raw block would end ours early), split after each `endraw` so that no literal
/// `{% endraw %}` can close it.
pub fn liquid_literal(text: &str) -> String {
    if !text.contains("{{") && !text.contains("{%") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    loop {
        // The same code spans Chatwoot finds: a backtick, the shortest run, a backtick.
        let span = rest.find('`').and_then(|open| rest[open + 1..].find('`').map(|close| (open, open + 1 + close + 1)));
        let (plain, code, after) = match span {
            Some((open, end)) => (&rest[..open], &rest[open..end], &rest[end..]),
            None => (rest, "", ""),
        };
        out.push_str(&raw_block(plain));
        out.push_str(code);
        if span.is_none() {
            return out;
        }
        rest = after;
    }
}

fn raw_block(plain: &str) -> String {
    if !plain.contains("{{") && !plain.contains("{%") {
        return plain.to_owned();
    }
    plain.split_inclusive("endraw").map(|piece| format!("{{% raw %}}{piece}{{% endraw %}}")).collect()
}

fn convert_markdown(markdown: &str, nesting: usize) -> String {
    let chars: Vec<char> = markdown.chars().collect();
    let mut out = String::with_capacity(markdown.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['`', '`', '`']) {
            let end = find_any(&chars, i + 3, &['`', '`', '`']).map_or(chars.len(), |e| e + 3);
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        if rest.starts_with(&['`']) {
            let end = find_any(&chars, i + 1, &['`']).map_or(chars.len(), |e| e + 1);
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        if rest.starts_with(&['['])
            && let Some(close) = find(&chars, i + 1, &[']', '('])
            && let Some(end) = find(&chars, close + 2, &[')'])
        {
            out.extend(&chars[close + 2..end]);
            i = end + 1;
            continue;
        }
        let spans: [(&[char], &str); 5] = if nesting >= MAX_NESTING {
            [(&[], ""), (&[], ""), (&[], ""), (&[], ""), (&[], "")]
        } else {
            [(&['*', '*'], "*"), (&['_', '_'], "*"), (&['~', '~'], "~"), (&['*'], "_"), (&['_'], "_")]
        };
        if let Some((marker, replacement, end)) = spans.iter().find_map(|(marker, replacement)| {
            let inner_start = i + marker.len();
            (!marker.is_empty()
                && rest.starts_with(marker)
                && chars.get(inner_start).is_some_and(|c| !c.is_whitespace()))
            .then(|| find(&chars, inner_start, marker))
            .flatten()
            .filter(|end| *end > inner_start && !chars[inner_start..*end].contains(&'\n'))
            .map(|end| (marker.len(), *replacement, end))
        }) {
            out.push_str(replacement);
            out.push_str(&convert_markdown(&chars[i + marker..end].iter().collect::<String>(), nesting + 1));
            out.push_str(replacement);
            i = end + marker;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Index of the first occurrence of `needle` at or after `from`, on the same line and within
/// [`MAX_SPAN`] characters.
fn find(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    let end = chars.len().min(from.saturating_add(MAX_SPAN));
    (from..end).take_while(|&j| chars[j] != '\n').find(|&j| chars[j..].starts_with(needle))
}

/// Like [`find`] without the bounds (code spans may be long; they are skipped as a whole, so each
/// character is scanned once).
fn find_any(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&j| chars[j..].starts_with(needle))
}

/// WhatsApp text → Markdown for Chatwoot.
pub fn whatsapp_to_markdown(text: &str) -> String {
    let doubled = double_markers(text, '*');
    double_markers(&doubled, '~')
}

/// Doubles a formatting marker around spans such as `*bold*` (opening marker at a word start, closing at a
/// word end, no line break inside), leaving other uses (`2 * 3`, `**`) alone. Code spans are not touched.
fn double_markers(text: &str, marker: char) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    let mut in_code = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' && chars.get(i..i + 3) == Some(&['`', '`', '`']) {
            in_code = !in_code;
            out.push_str("```");
            i += 3;
            continue;
        }
        if !in_code
            && c == marker
            && opens(&chars, i, marker)
            && let Some(close) = closing(&chars, i, marker)
        {
            out.push(marker);
            out.push(marker);
            out.extend(&chars[i + 1..close]);
            out.push(marker);
            out.push(marker);
            i = close + 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_boundary(c: Option<&char>) -> bool {
    c.is_none_or(|c| c.is_whitespace() || c.is_ascii_punctuation())
}

fn opens(chars: &[char], i: usize, marker: char) -> bool {
    let before = i.checked_sub(1).and_then(|p| chars.get(p));
    let after = chars.get(i + 1);
    is_boundary(before) && before != Some(&marker) && after.is_some_and(|c| !c.is_whitespace() && *c != marker)
}

fn closing(chars: &[char], open: usize, marker: char) -> Option<usize> {
    let mut j = open + 1;
    let end = chars.len().min(open.saturating_add(MAX_SPAN));
    while j < end {
        let c = chars[j];
        if c == '\n' {
            return None;
        }
        if c == marker {
            let before = chars.get(j - 1);
            let after = chars.get(j + 1);
            if before.is_some_and(|b| !b.is_whitespace()) && is_boundary(after) && after != Some(&marker) {
                return Some(j);
            }
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liquid_markers_are_kept_literal_outside_code_spans() {
        assert_eq!(liquid_literal("sem marcas"), "sem marcas");
        assert_eq!(liquid_literal("Oi {{nome}}!"), "{% raw %}Oi {{nome}}!{% endraw %}");
        assert_eq!(liquid_literal("a {% if x %} `{{code}}` b"), "{% raw %}a {% if x %} {% endraw %}`{{code}}` b");
        assert_eq!(liquid_literal("`{{só código}}`"), "`{{só código}}`");
        assert_eq!(
            liquid_literal("{% endraw %} {{x}}"),
            "{% raw %}{% endraw{% endraw %}{% raw %} %} {{x}}{% endraw %}"
        );
        assert_eq!(liquid_literal("aberto ` {{x}}"), "{% raw %}aberto ` {{x}}{% endraw %}");
    }

    #[test]
    fn agent_text_loses_editor_backslashes_and_trailing_newlines() {
        assert_eq!(normalize_agent_text("Olá\\\nsegunda linha\\\r\nterceira\n\n\n"), "Olá\nsegunda linha\nterceira");
        let fixed = normalize_agent_text("a\\\nb\n");
        assert_eq!(normalize_agent_text(&fixed), fixed, "idempotent");
        assert_eq!(normalize_agent_text("C:\\dir e\\ no fim"), "C:\\dir e\\ no fim", "other backslashes stay");
    }

    #[test]
    fn converts_markdown_for_whatsapp() {
        assert_eq!(
            markdown_to_whatsapp("**negrito** e *itálico* e _também_ e ~~riscado~~"),
            "*negrito* e _itálico_ e _também_ e ~riscado~"
        );
        assert_eq!(markdown_to_whatsapp("veja [o site](https://x.com/a?b=1)"), "veja https://x.com/a?b=1");
        assert_eq!(markdown_to_whatsapp("`**code**` fica"), "`**code**` fica");
        assert_eq!(markdown_to_whatsapp("__forte__"), "*forte*");
        assert_eq!(markdown_to_whatsapp("2 * 3 = 6"), "2 * 3 = 6");
        assert_eq!(markdown_to_whatsapp("**_ambos_**"), "*_ambos_*");
        assert_eq!(markdown_to_whatsapp("linha\nnova"), "linha\nnova");
    }

    #[test]
    fn stays_fast_on_hostile_text() {
        let started = std::time::Instant::now();
        for text in ["*".repeat(150_000), "[".repeat(150_000), "**_~".repeat(40_000), "*a ".repeat(50_000)] {
            let _ = markdown_to_whatsapp(&text);
            let _ = whatsapp_to_markdown(&text);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
        assert_eq!(markdown_to_whatsapp("**_~~x~~_**"), "*_~x~_*");
    }

    #[test]
    fn converts_whatsapp_markers() {
        assert_eq!(whatsapp_to_markdown("*Olá* _tudo_ ~bem~?"), "**Olá** _tudo_ ~~bem~~?");
        assert_eq!(whatsapp_to_markdown("preço: *R$ 10*, ok"), "preço: **R$ 10**, ok");
        assert_eq!(whatsapp_to_markdown("2 * 3 * 4"), "2 * 3 * 4", "not formatting");
        assert_eq!(whatsapp_to_markdown("a*b*c"), "a*b*c", "inside a word");
        assert_eq!(whatsapp_to_markdown("*open\nclose*"), "*open\nclose*", "no line break inside");
        assert_eq!(whatsapp_to_markdown("```*x*```"), "```*x*```", "code untouched");
        assert_eq!(whatsapp_to_markdown("**já markdown**"), "**já markdown**");
        assert_eq!(whatsapp_to_markdown("sem formatação"), "sem formatação");
    }
}
