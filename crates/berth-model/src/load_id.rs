//! [`LoadId`]: a package's load id, checked once where the package is opened.

use std::fmt;
use std::ops::Deref;

/// A dlt load id (`<seconds>.<fraction>`, such as `1795379913.1787062`): what `_dlt_loads`, the
/// journal, the staging dataset and the package folder are keyed by. Made only from a string of
/// that shape ([`LoadId::parse`]); reads as a `&str` where one is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct LoadId(String);

impl TryFrom<String> for LoadId {
    type Error = String;

    fn try_from(id: String) -> Result<Self, String> {
        Self::parse(&id).ok_or_else(|| format!("`{id}` is not a dlt load id (`<seconds>.<fraction>`)"))
    }
}

impl LoadId {
    /// `id` when it is shaped like a dlt load id (see [`crate::package::is_load_id`]).
    pub fn parse(id: &str) -> Option<Self> {
        crate::package::is_load_id(id).then(|| Self(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for LoadId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for LoadId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for LoadId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for LoadId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<&LoadId> for String {
    fn from(id: &LoadId) -> Self {
        id.0.clone()
    }
}

impl From<LoadId> for String {
    fn from(id: LoadId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dlt_shaped_ids_parse() {
        let id = LoadId::parse("1795379913.1787062").expect("a load id");
        assert_eq!(id, "1795379913.1787062");
        assert_eq!(id.replace('.', "_"), "1795379913_1787062");
        assert!(LoadId::parse("pkgA").is_none());
        assert!(LoadId::parse("").is_none());
    }
}
