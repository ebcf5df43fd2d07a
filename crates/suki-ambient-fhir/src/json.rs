//! The Bundle's JSON, written as the mapping goes: no intermediate model, no second pass over
//! the note. serde_json would write the same bytes (a test checks it) at twice the cost: it
//! escapes every key and copies the two large strings (the note in base64, the narrative XHTML)
//! through a model, where this writer puts them straight into the output.

/// A JSON text under construction. Values are written in order; commas are placed by the writer.
pub(crate) struct Json {
    out: Vec<u8>,
    /// Whether the next value or key needs a comma before it.
    comma: bool,
}

impl Json {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
            comma: false,
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// How many bytes are written so far: after a key, where its value will start; after a
    /// value, where it ended.
    pub(crate) fn position(&self) -> usize {
        self.out.len()
    }

    fn separate(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }

    /// An object as the next value, its members written by `members`.
    pub(crate) fn object(&mut self, members: impl FnOnce(&mut Self)) {
        self.separate();
        self.out.push(b'{');
        self.comma = false;
        members(self);
        self.out.push(b'}');
        self.comma = true;
    }

    /// An array as the next value, its elements written by `elements`.
    pub(crate) fn array(&mut self, elements: impl FnOnce(&mut Self)) {
        self.separate();
        self.out.push(b'[');
        self.comma = false;
        elements(self);
        self.out.push(b']');
        self.comma = true;
    }

    /// A member's key (a constant: written as it is).
    pub(crate) fn key(&mut self, key: &'static str) {
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }

    /// A string value, escaped.
    pub(crate) fn string(&mut self, text: &str) {
        self.string_of(&[text]);
    }

    /// A string value made of pieces, escaped (a value joined without allocating it).
    pub(crate) fn string_of(&mut self, pieces: &[&str]) {
        self.string_with(|out| {
            for piece in pieces {
                push_escaped::<false>(out, piece.as_bytes());
            }
        });
    }

    /// An integer value.
    pub(crate) fn integer(&mut self, n: i64) {
        self.separate();
        self.out.extend_from_slice(n.to_string().as_bytes());
        self.comma = true;
    }

    /// `"key":"text"`.
    pub(crate) fn field(&mut self, key: &'static str, text: &str) {
        self.key(key);
        self.string(text);
    }

    /// `"key":"text"` when there is a text.
    pub(crate) fn field_opt(&mut self, key: &'static str, text: Option<&str>) {
        if let Some(text) = text {
            self.field(key, text);
        }
    }

    /// `bytes` in base64 as a string value, encoded straight into the output.
    pub(crate) fn base64(&mut self, bytes: &[u8]) {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        self.string_with(|out| {
            let start = out.len();
            let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
            out.resize(start + len, 0);
            if engine.encode_slice(bytes, &mut out[start..]).is_err() {
                // Only if `len` were wrong (it is base64's own figure): encode the slow way.
                out.truncate(start);
                out.extend_from_slice(engine.encode(bytes).as_bytes());
            }
        });
    }

    /// A string value written by `write`, which escapes what it writes with [`push_escaped`]
    /// (JSON) or [`push_escaped`]`::<true>` (XML text inside JSON).
    pub(crate) fn string_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.separate();
        self.out.push(b'"');
        write(&mut self.out);
        self.out.push(b'"');
        self.comma = true;
    }
}

/// Whether `b` needs an escape in a JSON string (a quote, a backslash, a control character) or,
/// with `XML`, in XHTML text too (`&`, `<`, `>`). Branch-free, so that a chunk is tested on
/// vectors.
#[inline(always)]
fn special<const XML: bool>(b: u8) -> u8 {
    let json = u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
    if XML {
        json | u8::from(b == b'&') | u8::from(b == b'<') | u8::from(b == b'>')
    } else {
        json
    }
}

/// Appends `text` to `out` escaped for a JSON string (as serde_json escapes it: `\"`, `\\`,
/// `\b \f \n \r \t`, other controls as `\u00xx`), and with `XML` escaped for XHTML text first
/// (`&amp;`, `&lt;`, `&gt;`). Clean 16-byte chunks (nearly all of a note) are copied whole.
pub(crate) fn push_escaped<const XML: bool>(out: &mut Vec<u8>, text: &[u8]) {
    let mut start = 0;
    let (chunks, _) = text.as_chunks::<16>();
    let mut at = 0;
    for chunk in chunks {
        if chunk.iter().fold(0u8, |any, &b| any | special::<XML>(b)) != 0 {
            escape_range::<XML>(out, text, &mut start, at..at + 16);
        }
        at += 16;
    }
    escape_range::<XML>(out, text, &mut start, at..text.len());
    out.extend_from_slice(&text[start..]);
}

/// Writes `text[*start..]` up to each byte in `range` that needs an escape, then its escape;
/// `start` moves past it.
fn escape_range<const XML: bool>(
    out: &mut Vec<u8>,
    text: &[u8],
    start: &mut usize,
    range: std::ops::Range<usize>,
) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for at in range {
        let b = text[at];
        if special::<XML>(b) == 0 {
            continue;
        }
        out.extend_from_slice(&text[*start..at]);
        *start = at + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all = String::new();
        for c in (0u8..0x80).map(char::from).chain(['é', '\u{2028}', '😀']) {
            all.push(c);
            all.push_str("0123456789abcdef"); // a clean chunk between specials
            all.push(c);
        }
        for text in ["", "plain", "a\"b\\c", &all] {
            let mut json = Json::with_capacity(0);
            json.string(text);
            assert_eq!(
                String::from_utf8(json.into_bytes()).expect("utf-8"),
                serde_json::to_string(text).expect("json"),
            );
        }
    }

    #[test]
    fn xml_text_is_escaped_then_json() {
        let mut out = Vec::new();
        push_escaped::<true>(&mut out, b"a < b & \"c\" > d\t");
        assert_eq!(out, b"a &lt; b &amp; \\\"c\\\" &gt; d\\t");
    }

    #[test]
    fn commas_go_between_members_and_elements() {
        let mut json = Json::with_capacity(0);
        json.object(|j| {
            j.field("a", "1");
            j.key("b");
            j.array(|j| {
                j.integer(-2);
                j.object(|_| {});
                j.base64(b"hi");
                j.string_of(&["x", "/", "y"]);
            });
            j.field_opt("c", None);
            j.field_opt("d", Some("4"));
        });
        assert_eq!(
            String::from_utf8(json.into_bytes()).expect("utf-8"),
            r#"{"a":"1","b":[-2,{},"aGk=","x/y"],"d":"4"}"#
        );
    }
}
