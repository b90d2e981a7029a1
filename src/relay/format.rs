//! WhatsApp formatting ⇄ Chatwoot Markdown.
//!
//! WhatsApp marks `*bold*`, `_italic_`, `~strike~` and ```` ```mono``` ````; Chatwoot renders Markdown, where
//! bold is `**b**` and strike `~~s~~` (`_i_` and code already agree).

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
    while j < chars.len() {
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
