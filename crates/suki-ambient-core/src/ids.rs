//! `SessionId` and `EncounterId`: string newtypes, so the two ids cannot be swapped; and
//! `SessionKind`, the product a session belongs to.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps an id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The inner string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// An Ambient session id (a UUID in Suki's examples; a form-filling session id for
    /// form-filling notifications).
    SessionId
);
id_type!(
    /// An encounter id: one visit, which may span several sessions.
    EncounterId
);

/// Which product a session belongs to: which status route to poll and which links its
/// completion carries. Shared by the inbox's reconciler and the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// An Ambient session (note, structured data, transcript).
    Ambient,
    /// A form-filling session (status and structured data only).
    FormFilling,
}

impl SessionKind {
    /// Its stored and serialized spelling: `ambient`, `form_filling`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ambient => "ambient",
            Self::FormFilling => "form_filling",
        }
    }

    /// The kind spelled `s` (as [`as_str`](Self::as_str) spells it), if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ambient" => Some(Self::Ambient),
            "form_filling" => Some(Self::FormFilling),
            _ => None,
        }
    }
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
