//! Text for FHIR: strings its JSON schema accepts, XHTML narrative, search values, and
//! deterministic `urn:uuid`s.

use sha2::{Digest, Sha256};

/// `text` as a FHIR `string` (`[ \r\n\t\S]+`), or `None` when nothing is left: control
/// characters other than tab, CR and LF are dropped (XML cannot carry them either), other
/// whitespace (no-break space, line separators) becomes a space, and the ends are trimmed.
pub(crate) fn fhir_string(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' ' | '\t' | '\n' | '\r' => out.push(c),
            c if c.is_whitespace() => out.push(' '),
            c if c.is_control() || is_xml_excluded(c) => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Characters XML 1.0 does not allow even escaped (beside the C0 controls): the noncharacters
/// U+FFFE and U+FFFF.
fn is_xml_excluded(c: char) -> bool {
    matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Escapes `text` for XHTML content.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A narrative `div` for cleaned `text`: one `<p>` per paragraph (blank lines between), line
/// breaks within one as `<br/>`, everything escaped; well-formed XHTML with its namespace and
/// no named entities (FHIR's txt-1 and txt-2).
pub(crate) fn xhtml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    for paragraph in normalized.split("\n\n") {
        let paragraph = paragraph.trim();
        if paragraph.is_empty() {
            continue;
        }
        out.push_str("<p>");
        for (i, line) in paragraph.lines().enumerate() {
            if i > 0 {
                out.push_str("<br/>");
            }
            escape_into(&mut out, line);
        }
        out.push_str("</p>");
    }
    out.push_str("</div>");
    out
}

/// `text` percent-encoded for a search value inside `ifNoneExist`: everything but RFC 3986's
/// unreserved characters, `:` and `/` (as in `identifier=urn:suki:session|abc/note`).
pub(crate) fn search_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `urn:uuid:` for `name`, the same every time (a name-based UUID from SHA-256, version 8
/// layout): Bundle entries' `fullUrl`s, so that a Bundle is byte-for-byte the same on every
/// attempt.
pub(crate) fn urn_uuid(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8 (custom)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_what_fhir_accepts() {
        assert_eq!(
            fhir_string("  a\u{00A0}b\u{0001}c\u{2028}d \n"),
            Some("a bc d".into())
        );
        assert_eq!(fhir_string(" \u{0007} "), None);
        assert_eq!(fhir_string("\u{FFFF}"), None);
    }

    #[test]
    fn narrative_is_escaped_xhtml() {
        assert_eq!(
            xhtml("a < b & c\nnext line\n\n<script>x</script>"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &lt; b &amp; c<br/>next line</p>\
             <p>&lt;script&gt;x&lt;/script&gt;</p></div>"
        );
    }

    #[test]
    fn search_values_and_uuids() {
        assert_eq!(search_value("a b|c/d:e"), "a%20b%7Cc/d:e");
        let a = urn_uuid("s-1/note");
        assert_eq!(a, urn_uuid("s-1/note"));
        assert_ne!(a, urn_uuid("s-2/note"));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        assert_eq!(&a[9 + 14..9 + 15], "8", "version nibble: {a}");
    }
}
