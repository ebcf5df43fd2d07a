//! Redacted `Debug` output: lengths and counts in place of payload content (PHI).

use std::fmt;

/// Shows `<redacted N bytes>` in place of a string's content.
pub(crate) struct RedactedStr(pub(crate) usize);

impl fmt::Debug for RedactedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

/// Shows `<redacted>` or `None` for an optional string.
pub(crate) fn opt_str(value: &Option<String>) -> &'static dyn fmt::Debug {
    if value.is_some() {
        &"<redacted>"
    } else {
        &None::<()>
    }
}

/// Shows `<N items>` in place of a collection's content.
pub(crate) struct Count(pub(crate) usize);

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} items>", self.0)
    }
}
