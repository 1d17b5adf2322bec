//! One redaction for every location and destination berth prints: URLs and libpq key/value
//! strings with their secrets replaced by `***`.

/// Does a query or key/value parameter named `key` hold a secret?
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "key",
        "sig",
        "credential",
        "auth",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// `url` with its password and every secret-looking parameter (`password=`, `*secret*`,
/// `*token*`, `*key*`, `sig`, …) replaced by `***`. A libpq key/value string
/// (`host=db password=…`) keeps its keys; anything else unparseable keeps only its scheme.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query().is_some() {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_key(&k) {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) if !url.contains("://") && url.contains('=') => url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => url
            .split_once("://")
            .map_or_else(|| url.to_string(), |(scheme, _)| format!("{scheme}://…")),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn secrets_in_every_place_are_hidden() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?password=secret&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("host=db user=u password=secret"),
            "host=db user=u password=***"
        );
        assert_eq!(redact_url("duckdb:x.duckdb?threads=2"), "duckdb:x.duckdb?threads=2");
        assert!(!redact_url("postgres://u:se cret@h/db").contains("se cret"));
        assert!(!redact_url("s3://b/p?aws_secret_access_key=abc").contains("abc"));
        assert!(!redact_url("https://h/p?sig=abc&x=1").contains("abc"));
    }
}
