//! Which chat an event belongs to: every form a WhatsApp chat appears under (phone JID, LID, the
//! Brazilian number with and without the 9th digit) is an alias of one chat.

use crate::ryzeapi_event::Party;

/// The aliases of a chat as seen in one event: its JID, its LID and, for Brazilian mobile numbers, the
/// other form of the number.
pub fn aliases(chat: &Party) -> Vec<String> {
    let mut aliases = Vec::new();
    for jid in [&chat.jid, &chat.lid].into_iter().flatten() {
        push_unique(&mut aliases, jid.clone());
        if let Some(variant) = brazilian_variant(jid) {
            push_unique(&mut aliases, variant);
        }
    }
    aliases
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// `55 DD 9XXXXXXXX` ↔ `55 DD XXXXXXXX` for `@s.whatsapp.net` JIDs (WhatsApp knows older Brazilian
/// accounts without the 9th digit; RyzeAPI may report either form).
pub fn brazilian_variant(jid: &str) -> Option<String> {
    let number = jid.strip_suffix("@s.whatsapp.net")?;
    if !number.starts_with("55") || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (area, rest) = (number.get(2..4)?, number.get(4..)?);
    match rest.len() {
        9 if rest.starts_with('9') => Some(format!("55{area}{}@s.whatsapp.net", rest.get(1..)?)),
        // Only mobile numbers (starting 6–9) gained the 9th digit; landlines (2–5) did not.
        8 if rest.starts_with(['6', '7', '8', '9']) => Some(format!("55{area}9{rest}@s.whatsapp.net")),
        _ => None,
    }
}

/// `+<digits>` for a phone JID (`…@s.whatsapp.net`), if it is one.
pub fn phone_number(jid: &str) -> Option<String> {
    let number = jid.strip_suffix("@s.whatsapp.net")?;
    (number.len() >= 2 && number.len() <= 15 && number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0'))
        .then(|| format!("+{number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brazilian_mobile_numbers_have_two_forms() {
        assert_eq!(brazilian_variant("5511999998888@s.whatsapp.net").as_deref(), Some("551199998888@s.whatsapp.net"));
        assert_eq!(brazilian_variant("551199998888@s.whatsapp.net").as_deref(), Some("5511999998888@s.whatsapp.net"));
        assert_eq!(brazilian_variant("551133334444@s.whatsapp.net"), None, "landline");
        assert_eq!(brazilian_variant("14155550100@s.whatsapp.net"), None, "not Brazil");
        assert_eq!(brazilian_variant("123@lid"), None);
    }

    #[test]
    fn aliases_cover_jid_lid_and_variant() {
        let chat = Party {
            jid: Some("5511999998888@s.whatsapp.net".into()),
            lid: Some("1234@lid".into()),
            ..Party::default()
        };
        assert_eq!(aliases(&chat), vec!["5511999998888@s.whatsapp.net", "551199998888@s.whatsapp.net", "1234@lid"]);
    }

    #[test]
    fn phone_numbers_only_from_phone_jids() {
        assert_eq!(phone_number("5511999998888@s.whatsapp.net").as_deref(), Some("+5511999998888"));
        assert_eq!(phone_number("1234@lid"), None);
        assert_eq!(phone_number("120363@g.us"), None);
    }
}
