//! `Secret`: a string that never prints itself.
//!
//! Tokens, client secrets, refresh tokens, API keys and passwords travel
//! through every stage (definition, plan, auth, fetch), so the type lives at
//! the crate root and depends on nothing. `Debug` and `Display` print a fixed
//! redaction; the only way to the value is [`Secret::expose`], which makes
//! every use greppable.
//!
//! Beside the type: where a credential may be sent ([`may_carry_credentials`])
//! and the scrubber that removes credentials from server text ([`scrub`]).

use std::fmt;

mod destination;
mod scrub;

pub use destination::Refusal;
pub(crate) use destination::may_carry_credentials;
pub use scrub::{
    MASK, MIN_SCRUBBED_LEN, holds_credential, is_credential, longest_form, register,
    register_issued, scrub, scrub_bytes,
};

/// What `Debug` and `Display` print instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A secret value. Cloning is cheap enough for tokens; it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that must send it (a header, a form
    /// field). Never pass the result to a log macro or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }
}
