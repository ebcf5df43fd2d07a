//! Text for FHIR: strings its JSON schema accepts, XHTML narrative, search values, and
//! deterministic `urn:uuid`s.

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

/// `text` as a FHIR `string` (`[ \r\n\t\S]+`), or `None` when nothing is left: control
/// characters other than tab, CR and LF are dropped (XML cannot carry them either), and so is
/// U+FEFF (a byte-order mark: whitespace to the JavaScript-style `\s` validators read R4's
/// regexes with, so one in a code or a title fails a strict server's check of the whole
/// transaction); other whitespace (no-break space, line separators) becomes a space, and the
/// ends are trimmed.
/// Borrows `text` when it needs no change (most text: a note section is not copied to be
/// checked).
pub(crate) fn fhir_text(text: &str) -> Option<Cow<'_, str>> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    // Printable ASCII first (a branch-free byte test), then any character that would change.
    if plain_ascii(trimmed.as_bytes()) || !trimmed.chars().any(needs_change) {
        return Some(Cow::Borrowed(trimmed));
    }
    let mut out = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        match c {
            ' ' | '\t' | '\n' | '\r' => out.push(c),
            '\u{FEFF}' => {}
            c if c.is_whitespace() => out.push(' '),
            c if c.is_control() || is_xml_excluded(c) => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| Cow::Owned(trimmed.to_owned()))
}

/// Whether `bytes` are printable ASCII, tab, LF and CR only. No early exit, no branch: the
/// loop runs on vectors.
fn plain_ascii(bytes: &[u8]) -> bool {
    let mut bad = 0u8;
    for &b in bytes {
        let allowed_control = u8::from(b == b'\t') | u8::from(b == b'\n') | u8::from(b == b'\r');
        bad |= (u8::from(b < 0x20) & !allowed_control) | u8::from(b >= 0x7f);
    }
    bad == 0
}

/// Whether [`fhir_text`] changes `c`.
fn needs_change(c: char) -> bool {
    match c {
        ' ' | '\t' | '\n' | '\r' => false,
        '\u{FEFF}' => true,
        c => c.is_whitespace() || c.is_control() || is_xml_excluded(c),
    }
}

/// Characters XML 1.0 does not allow even escaped (beside the C0 controls): the noncharacters
/// U+FFFE and U+FFFF.
fn is_xml_excluded(c: char) -> bool {
    matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Cleaned text as a narrative `div` (its `Display` writes the XHTML): one `<p>` per paragraph
/// (blank lines between), line breaks within one as `<br/>`, `&`, `<` and `>` escaped;
/// well-formed XHTML with its namespace and no named entities (FHIR's txt-1 and txt-2). Written
/// through serde's `collect_str`, it goes into the JSON without an intermediate `String`.
pub(crate) struct Xhtml<'a>(pub(crate) &'a str);

impl fmt::Display for Xhtml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<div xmlns=\"http://www.w3.org/1999/xhtml\">")?;
        let mut in_paragraph = false;
        // `lines` ends lines at `\n` and `\r\n` (a lone `\r` stays: XML allows it).
        for line in self.0.lines() {
            let line = line.trim();
            if line.is_empty() {
                if in_paragraph {
                    f.write_str("</p>")?;
                    in_paragraph = false;
                }
                continue;
            }
            f.write_str(if in_paragraph { "<br/>" } else { "<p>" })?;
            in_paragraph = true;
            write_xml_text(f, line)?;
        }
        if in_paragraph {
            f.write_str("</p>")?;
        }
        f.write_str("</div>")
    }
}

/// `text` escaped for XML text: `&amp;`, `&lt;`, `&gt;`; the runs between written whole.
fn write_xml_text(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let mut start = 0;
    for at in memchr::memchr3_iter(b'&', b'<', b'>', text.as_bytes()) {
        f.write_str(&text[start..at])?;
        f.write_str(match text.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            _ => "&gt;",
        })?;
        start = at + 1;
    }
    f.write_str(&text[start..])
}

/// `text` as one search value inside `ifNoneExist` or a search: first FHIR-escaped (`,` `|` `$`
/// and `\` get a `\` before them, so that a value with a comma is not read as two values ORed,
/// nor one with a bar as a system), then percent-encoded: everything but RFC 3986's unreserved
/// characters, `:` and `/` (as in `identifier=urn:suki:session|abc/note`).
pub(crate) fn search_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    push_search_value(&mut out, text);
    out
}

/// [`search_value`], appended to `out`.
pub(crate) fn push_search_value(out: &mut String, text: &str) {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    /// Everything but RFC 3986's unreserved characters, `:` and `/`.
    const SEARCH: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b':')
        .remove(b'/');
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, ',' | '|' | '$' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    out.extend(utf8_percent_encode(&escaped, SEARCH));
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
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        hex::encode(&b[..4]),
        hex::encode(&b[4..6]),
        hex::encode(&b[6..8]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_what_fhir_accepts() {
        assert_eq!(
            fhir_text("  a\u{00A0}b\u{0001}c\u{2028}d \n").as_deref(),
            Some("a bc d")
        );
        assert_eq!(fhir_text(" \u{0007} "), None);
        assert_eq!(fhir_text("\u{FFFF}"), None);
        // A byte-order mark is whitespace to the validators' `\s`: removed, not a space.
        assert_eq!(fhir_text("\u{FEFF}J45.909").as_deref(), Some("J45.909"));
        assert_eq!(fhir_text("Plan\u{FEFF} A").as_deref(), Some("Plan A"));
        assert_eq!(fhir_text("\u{FEFF}"), None);
    }

    /// The narrative of `text`.
    fn xhtml(text: &str) -> String {
        Xhtml(text).to_string()
    }

    #[test]
    fn narrative_is_escaped_xhtml() {
        assert_eq!(
            xhtml("a < b & c\nnext line\n\n<script>x</script>"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &lt; b &amp; c<br/>next line</p>\
             <p>&lt;script&gt;x&lt;/script&gt;</p></div>"
        );
        assert_eq!(
            xhtml("one\r\ntwo\r\n \r\n\"q\" 'a' >\ttab\\"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>one<br/>two</p>\
             <p>\"q\" 'a' &gt;\ttab\\</p></div>"
        );
    }

    #[test]
    fn search_values_and_uuids() {
        assert_eq!(search_value("a b|c/d:e"), "a%20b%5C%7Cc/d:e");
        // FHIR's search escapes: a comma is not an OR, a bar not a system, `$` not a
        // composite, and a backslash is itself.
        assert_eq!(search_value("s-1,s-2/note"), "s-1%5C%2Cs-2/note");
        assert_eq!(search_value("a$b\\c"), "a%5C%24b%5C%5Cc");
        let a = urn_uuid("s-1/note");
        assert_eq!(a, urn_uuid("s-1/note"));
        assert_ne!(a, urn_uuid("s-2/note"));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        assert_eq!(&a[9 + 14..9 + 15], "8", "version nibble: {a}");
    }
}
