//! dlt's naming conventions (`normalizers.names` in `schema.json`): how dlt turns a dataset name
//! into the name it creates, and whether names keep their case.
//!
//! Table and column names in a package are already normalized by dlt's normalize step; the one
//! name a loader still normalizes is the dataset's (dlt's `normalize_dataset_name`: `ShopData`
//! becomes `shop_data` under `snake_case`, stays `ShopData` under `sql_cs_v1`). The conventions
//! here follow dlt 1.31's `dlt/common/normalizers/naming/*.py`, except that names longer than a
//! destination takes are refused by the loader instead of shortened with a hash tag.

use std::fmt;

/// A dlt naming convention.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamingConvention {
    /// `snake_case` (dlt's default): lower-case snake case over a reduced alphabet.
    #[default]
    SnakeCase,
    /// `sql_cs_v1`: SQL-safe names that keep their case.
    SqlCsV1,
    /// `sql_ci_v1`: `sql_cs_v1`, lower-cased.
    SqlCiV1,
    /// `duck_case`: every unicode character but new lines and `"`, case kept.
    DuckCase,
    /// `direct`: names as given but for new lines and quotes.
    Direct,
    /// A convention berth does not know (a custom module): names are used as they are.
    Other(String),
}

impl NamingConvention {
    /// The convention named in `normalizers.names` (`snake_case`, or a module path such as
    /// `dlt.common.normalizers.naming.sql_cs_v1`); `None` is dlt's default.
    pub fn from_schema_name(name: Option<&str>) -> Self {
        let Some(name) = name else { return Self::SnakeCase };
        match name.rsplit('.').next().unwrap_or(name) {
            "snake_case" => Self::SnakeCase,
            "sql_cs_v1" => Self::SqlCsV1,
            "sql_ci_v1" => Self::SqlCiV1,
            "duck_case" => Self::DuckCase,
            "direct" => Self::Direct,
            _ => Self::Other(name.to_string()),
        }
    }

    /// Names differing only in case are different names (dlt's `is_case_sensitive`): a
    /// destination that can keep case must not fold them.
    pub fn is_case_sensitive(&self) -> bool {
        match self {
            Self::SnakeCase | Self::SqlCiV1 => false,
            Self::SqlCsV1 | Self::DuckCase | Self::Direct | Self::Other(_) => true,
        }
    }

    /// dlt's `normalize_table_identifier`: the name of a dataset, table or schema. `None` for a
    /// name that is empty once trimmed (dlt raises).
    pub fn normalize_table_identifier(&self, identifier: &str) -> Option<String> {
        let identifier = identifier.trim();
        if identifier.is_empty() {
            return None;
        }
        Some(match self {
            Self::SnakeCase => snake_case(identifier),
            Self::SqlCsV1 => sql_cs_v1(identifier),
            Self::SqlCiV1 => sql_cs_v1(identifier).to_lowercase(),
            Self::DuckCase => contract_underscores(&replace_chars(identifier, &['\n', '\r', '"'])),
            Self::Direct => replace_chars(identifier, &['\n', '\r', '\'', '"', '▶']),
            Self::Other(_) => identifier.to_string(),
        })
    }
}

impl fmt::Display for NamingConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SnakeCase => "snake_case",
            Self::SqlCsV1 => "sql_cs_v1",
            Self::SqlCiV1 => "sql_ci_v1",
            Self::DuckCase => "duck_case",
            Self::Direct => "direct",
            Self::Other(name) => name,
        })
    }
}

fn replace_chars(s: &str, chars: &[char]) -> String {
    s.chars().map(|c| if chars.contains(&c) { '_' } else { c }).collect()
}

/// `[^a-zA-Z\d_]+` → `_` (dlt's `RE_NON_ALPHANUMERIC`; digits taken as ASCII).
fn replace_non_alphanumeric(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// `__+` → `_`.
fn contract_underscores(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// `^\d+` → prefixed with `_`.
fn prefix_leading_digit(s: String) -> String {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

fn sql_cs_v1(identifier: &str) -> String {
    let mut name = prefix_leading_digit(replace_non_alphanumeric(identifier));
    if name != "_" {
        name.truncate(name.trim_end_matches('_').len());
    }
    contract_underscores(&name)
}

fn snake_case(identifier: &str) -> String {
    let reduced: String = identifier
        .chars()
        .map(|c| match c {
            '+' | '*' => 'x',
            '-' => '_',
            '@' => 'a',
            '|' => 'l',
            other => other,
        })
        .collect();
    let name = replace_non_alphanumeric(&reduced);
    let name = prefix_leading_digit(break_lower_upper(&break_word_starts(&name)).to_lowercase());
    // Trailing underscores become `x` each, so they cannot merge with a path separator.
    let stripped = name.trim_end_matches('_');
    let name = format!("{stripped}{}", "x".repeat(name.len() - stripped.len()));
    contract_underscores(&name)
}

/// `([^_])([A-Z][a-z]+)` → `\1_\2`, matched left to right without overlap, as `re.sub` does.
fn break_word_starts(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        let word = chars[i] != '_'
            && chars.get(i + 1).is_some_and(char::is_ascii_uppercase)
            && chars.get(i + 2).is_some_and(char::is_ascii_lowercase);
        if word {
            let mut end = i + 3;
            while chars.get(end).is_some_and(char::is_ascii_lowercase) {
                end += 1;
            }
            out.push(chars[i]);
            out.push('_');
            out.extend(&chars[i + 1..end]);
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `([a-z0-9])([A-Z])` → `\1_\2`, matched left to right without overlap.
fn break_lower_upper(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        let lower_or_digit = chars[i].is_ascii_lowercase() || chars[i].is_ascii_digit();
        if lower_or_digit && chars.get(i + 1).is_some_and(char::is_ascii_uppercase) {
            out.push(chars[i]);
            out.push('_');
            out.push(chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values printed by dlt 1.31.0's own conventions
    /// (`NamingConvention().normalize_table_identifier(name)`).
    #[test]
    fn snake_case_matches_dlt() {
        let snake = NamingConvention::SnakeCase;
        for (name, expected) in [
            ("ShopData", "shop_data"),
            ("shop_data", "shop_data"),
            ("  Shop Data  ", "shop_data"),
            ("HTTPServer", "http_server"),
            ("getHTTPResponseCode", "get_http_response_code"),
            ("ABcDe", "a_bc_de"),
            ("2fast", "_2fast"),
            ("trailing__", "trailingxx"),
            ("a--b", "a_b"),
            ("c++", "cxx"),
            ("user@host|x", "userahostlx"),
            ("Straße", "stra_e"),
            ("a__b___c", "a_b_c"),
        ] {
            assert_eq!(
                snake.normalize_table_identifier(name).as_deref(),
                Some(expected),
                "{name}"
            );
        }
        assert_eq!(snake.normalize_table_identifier("   "), None);
    }

    #[test]
    fn case_sensitive_conventions_keep_case() {
        let cs = NamingConvention::from_schema_name(Some("sql_cs_v1"));
        assert!(cs.is_case_sensitive());
        assert_eq!(cs.normalize_table_identifier("Naming_DS").as_deref(), Some("Naming_DS"));
        assert_eq!(cs.normalize_table_identifier("My Table__").as_deref(), Some("My_Table"));
        assert_eq!(cs.normalize_table_identifier("9Lives").as_deref(), Some("_9Lives"));
        let ci = NamingConvention::from_schema_name(Some("dlt.common.normalizers.naming.sql_ci_v1"));
        assert!(!ci.is_case_sensitive());
        assert_eq!(ci.normalize_table_identifier("Naming_DS").as_deref(), Some("naming_ds"));
        let duck = NamingConvention::from_schema_name(Some("duck_case"));
        assert_eq!(duck.normalize_table_identifier("Ünï \"q\"").as_deref(), Some("Ünï _q_"));
        assert_eq!(NamingConvention::from_schema_name(None), NamingConvention::SnakeCase);
        let custom = NamingConvention::from_schema_name(Some("my_pkg.my_naming"));
        assert_eq!(custom.normalize_table_identifier("AnyName").as_deref(), Some("AnyName"));
    }
}
