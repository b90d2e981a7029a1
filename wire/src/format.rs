//! WhatsApp formatting ⇄ Chatwoot Markdown.
//!
//! WhatsApp marks `*bold*`, `_italic_`, `~strike~` and ```` ```mono``` ````; Chatwoot renders Markdown, where
//! bold is `**b**` and strike `~~s~~` (`_i_` and code already agree).
//!
//! An agent's Markdown is read with `pulldown-cmark`, a CommonMark parser (with GFM strikethrough): it decides
//! what is emphasis, a link or code as a CommonMark renderer does (flanking rules, intraword `_`, escapes,
//! code spans, nesting), in linear time, where the hand-written parser it replaced got such cases wrong and
//! once went quadratic. From the parser's source offsets only the emphasis and strike delimiters and the
//! inline links are rewritten; every other byte is copied as typed, since WhatsApp shows raw text. The other
//! direction reads WhatsApp text, which is not CommonMark, and stays hand-written.

use std::ops::Range;

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

/// Longest `*x*`/`~x~` span [`whatsapp_to_markdown`] looks for, in characters, on one line. Bounds the work
/// per marker: a 150,000-character message full of `*` stays linear instead of quadratic.
const MAX_SPAN: usize = 256;

/// Chatwoot Markdown → WhatsApp formatting (contract §5): `**b**`/`__b__` → `*b*`, `*i*`/`_i_` → `_i_`,
/// `~~s~~` → `~s~`, `[text](url)` (and `![alt](url)`) → the URL. Everything else, code included, is left as
/// typed. Never longer than the input: each rewrite replaces a delimiter or a link by something no longer.
pub fn markdown_to_whatsapp(markdown: &str) -> String {
    let mut rewriter = Rewriter { source: markdown, out: String::with_capacity(markdown.len()), copied: 0 };
    let mut events = Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH).into_offset_iter();
    while let Some((event, range)) = events.next() {
        match event {
            Event::Start(Tag::Link { link_type: LinkType::Inline, dest_url, .. })
            | Event::Start(Tag::Image { link_type: LinkType::Inline, dest_url, .. })
                if !dest_url.is_empty() =>
            {
                rewriter.replace(range, &dest_url);
                // The link text goes with it: skip to the link's own end (an image may nest inside a link).
                let mut depth = 1_usize;
                for (event, _) in events.by_ref() {
                    match event {
                        Event::Start(_) => depth += 1,
                        Event::End(_) => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                }
            }
            Event::Start(tag) => {
                if let Some((len, with)) = delimiter(markdown, &range, Marker::opening(&tag)) {
                    rewriter.replace(range.start..range.start + len, with);
                }
            }
            // An end event carries its start's range, so the same delimiter is found at both ends.
            Event::End(tag) => {
                if let Some((len, with)) = delimiter(markdown, &range, Marker::closing(tag)) {
                    rewriter.replace(range.end - len..range.end, with);
                }
            }
            _ => {}
        }
    }
    rewriter.finish()
}

#[derive(Clone, Copy)]
enum Marker {
    Strong,
    Emphasis,
    Strikethrough,
}

impl Marker {
    fn opening(tag: &Tag<'_>) -> Option<Self> {
        match tag {
            Tag::Strong => Some(Self::Strong),
            Tag::Emphasis => Some(Self::Emphasis),
            Tag::Strikethrough => Some(Self::Strikethrough),
            _ => None,
        }
    }

    fn closing(tag: TagEnd) -> Option<Self> {
        match tag {
            TagEnd::Strong => Some(Self::Strong),
            TagEnd::Emphasis => Some(Self::Emphasis),
            TagEnd::Strikethrough => Some(Self::Strikethrough),
            _ => None,
        }
    }
}

/// Byte length of the delimiter at each end of a span's `range`, and its WhatsApp replacement.
fn delimiter(source: &str, range: &Range<usize>, marker: Option<Marker>) -> Option<(usize, &'static str)> {
    let span = source.get(range.clone())?;
    let (len, with) = match marker? {
        Marker::Strong => (2, "*"),
        Marker::Emphasis => (1, "_"),
        // GFM strikethrough takes `~` or `~~`, the same run at both ends.
        Marker::Strikethrough if span.starts_with("~~") && span.ends_with("~~") && span.len() > 4 => (2, "~"),
        Marker::Strikethrough => (1, "~"),
    };
    (span.len() > 2 * len).then_some((len, with))
}

/// The output of [`markdown_to_whatsapp`]: the source copied up to `copied`, with replacements.
struct Rewriter<'a> {
    source: &'a str,
    out: String,
    copied: usize,
}

impl Rewriter<'_> {
    /// Copies the source up to `range` and puts `with` in its place. Offsets come in source order; one that
    /// does not fit (or a longer replacement) is left as typed rather than trusted.
    fn replace(&mut self, range: Range<usize>, with: &str) {
        if with.len() > range.len() || !self.source.is_char_boundary(range.end) {
            return;
        }
        if let Some(before) = self.source.get(self.copied..range.start) {
            self.out.push_str(before);
            self.out.push_str(with);
            self.copied = range.end;
        }
    }

    fn finish(mut self) -> String {
        self.out.push_str(self.source.get(self.copied..).unwrap_or_default());
        self.out
    }
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
    fn nested_and_intraword_markers_follow_commonmark() {
        assert_eq!(markdown_to_whatsapp("**_x_**"), "*_x_*");
        assert_eq!(markdown_to_whatsapp("_**x**_ e ~~*y*~~"), "_*x*_ e ~_y_~");
        assert_eq!(markdown_to_whatsapp("***x***"), "_*x*_");
        assert_eq!(markdown_to_whatsapp("~um~ e ~~dois~~"), "~um~ e ~dois~");
        assert_eq!(markdown_to_whatsapp("snake_case_name e __init__"), "snake_case_name e *init*");
        assert_eq!(markdown_to_whatsapp("**em duas\nlinhas**"), "*em duas\nlinhas*");
        assert_eq!(markdown_to_whatsapp("** solto ** e *a *"), "** solto ** e *a *", "not flanking");
    }

    #[test]
    fn links_become_their_url() {
        assert_eq!(markdown_to_whatsapp("[**o** _site_](https://x.com/a)!"), "https://x.com/a!");
        assert_eq!(markdown_to_whatsapp("**[aqui](https://x.com)**"), "*https://x.com*");
        assert_eq!(markdown_to_whatsapp("[a](<https://x.com/a b> \"título\")"), "https://x.com/a b");
        assert_eq!(markdown_to_whatsapp("[a](https://x.com/?a=1&amp;b=2)"), "https://x.com/?a=1&b=2");
        assert_eq!(markdown_to_whatsapp("![foto](https://x.com/f.png)"), "https://x.com/f.png");
        assert_eq!(markdown_to_whatsapp("[![f](https://i)](https://l)"), "https://l");
        // Not links in CommonMark, or with no URL to show: as typed.
        assert_eq!(markdown_to_whatsapp("[a](b c) [vazio]() [a][ref]"), "[a](b c) [vazio]() [a][ref]");
        assert_eq!(markdown_to_whatsapp("<https://x.com>"), "<https://x.com>");
    }

    #[test]
    fn everything_else_is_copied_as_typed() {
        assert_eq!(markdown_to_whatsapp("\\*not bold\\*"), "\\*not bold\\*");
        // Only the escaped `*` is literal; the unescaped ones around `nada\*` are still emphasis.
        assert_eq!(markdown_to_whatsapp("\\**nada\\**"), "\\*_nada\\*_");
        let text = "# Título **b**\n\n> citação *i*\n\n- item\n* outro  \n1. um\n\n<b>x</b> &amp; &lt; \\# fim  ";
        assert_eq!(
            markdown_to_whatsapp(text),
            "# Título *b*\n\n> citação _i_\n\n- item\n* outro  \n1. um\n\n<b>x</b> &amp; &lt; \\# fim  "
        );
        let code = "```rust\nlet **a** = _b_;\n```\n\n    **indentado**\n\n`` `*x*` `` e\n~~~\n~~y~~\n~~~";
        assert_eq!(markdown_to_whatsapp(code), code);
        assert_eq!(markdown_to_whatsapp("> **a\n> b**"), "> *a\n> b*");
        assert_eq!(
            markdown_to_whatsapp("Olá, tudo bem? {{x}} é 100% <ok>\r\n\n\n"),
            "Olá, tudo bem? {{x}} é 100% <ok>\r\n\n\n"
        );
    }

    /// The hand-written parser once went quadratic on these; each must simply finish (and the markdown one
    /// never grows the text).
    #[test]
    fn stays_fast_on_hostile_text() {
        let mut nested_list = String::new();
        for depth in 0..2_000 {
            nested_list.push_str(&" ".repeat(depth * 2));
            nested_list.push_str("- *x*\n");
        }
        let hostile = [
            "*".repeat(150_000),
            "[".repeat(150_000),
            "**_~".repeat(40_000),
            "*a ".repeat(50_000),
            "[a](".repeat(40_000),
            "![".repeat(75_000),
            "` ``".repeat(40_000),
            ">".repeat(150_000),
            "> - ".repeat(40_000),
            format!("{}x{}", "*".repeat(75_000), "*".repeat(75_000)),
            format!("{}x{}", "[".repeat(75_000), "](u)".repeat(75_000)),
            nested_list,
        ];
        for text in hostile {
            assert!(markdown_to_whatsapp(&text).len() <= text.len());
            let _ = whatsapp_to_markdown(&text);
        }
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
