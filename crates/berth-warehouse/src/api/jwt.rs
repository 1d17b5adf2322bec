//! Snowflake key-pair authentication: a JWT signed with the user's RSA private key (RS256), as
//! Snowflake's SQL API takes it (`X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT`):
//! `iss = <ACCOUNT>.<USER>.SHA256:<base64 SHA-256 of the public key's DER>`,
//! `sub = <ACCOUNT>.<USER>`, valid for an hour. Made with ring; the key is an unencrypted PKCS#8
//! PEM file (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

/// How long a token is valid (Snowflake's maximum is one hour).
pub const LIFETIME_SECS: i64 = 3600;

/// A user's key pair for Snowflake. `Debug` shows only the public key fingerprint.
pub struct KeyPair {
    key: RsaKeyPair,
    fingerprint: String,
    account: String,
    user: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("account", &self.account)
            .field("user", &self.user)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// From an unencrypted PKCS#8 PEM private key, for `user` of `account` (the account
    /// identifier before `.snowflakecomputing.com`; Snowflake wants it upper-case and without a
    /// region suffix after a dot).
    pub fn from_pem(pem: &str, account: &str, user: &str) -> Result<Self, String> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        if pem.contains("ENCRYPTED PRIVATE KEY") {
            return Err(
                "the private key is encrypted; decrypt it to unencrypted PKCS#8 (openssl pkcs8 -topk8 -nocrypt)".into(),
            );
        }
        let der = STANDARD
            .decode(body)
            .map_err(|_| "the private key file is not a PEM file".to_string())?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            format!("not an RSA private key in PKCS#8 form ({e}); convert it with openssl pkcs8 -topk8 -nocrypt")
        })?;
        let spki = rsa_spki(key.public().as_ref());
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        let account = account.split('.').next().unwrap_or(account).to_ascii_uppercase();
        Ok(Self {
            key,
            fingerprint: format!("SHA256:{}", STANDARD.encode(digest.as_ref())),
            account,
            user: user.to_ascii_uppercase(),
        })
    }

    /// `SHA256:<base64>` of the public key, as `DESC USER` shows it (`RSA_PUBLIC_KEY_FP`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A token issued at `now` (Unix seconds).
    pub fn token(&self, now: i64) -> Result<String, String> {
        let subject = format!("{}.{}", self.account, self.user);
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        let claims = serde_json::json!({
            "iss": format!("{subject}.{}", self.fingerprint),
            "sub": subject,
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the key-pair token failed".to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A DER length.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// `SubjectPublicKeyInfo` of an RSA public key given as PKCS#1 `RSAPublicKey` DER (what ring
/// gives): `SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { key } }`.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // OID 1.2.840.113549.1.1.1 and NULL.
    let algorithm = der(
        0x30,
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ],
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut content = algorithm;
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../../../testdata/keys/snowflake-test-key.p8");

    #[test]
    fn tokens_carry_snowflakes_fingerprint_and_verify() {
        let pair = KeyPair::from_pem(KEY, "myorg-acct.eu-central-1", "loader").unwrap();
        // The fingerprint openssl computes for the same key (testdata/keys/README.md).
        assert_eq!(
            pair.fingerprint(),
            "SHA256:EZIa0CARm0H7BSdLxjxeK85WmdlDpK892f1rbGn0rjA="
        );
        let token = pair.token(1_800_000_000).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "MYORG-ACCT.LOADER");
        assert_eq!(
            claims["iss"],
            "MYORG-ACCT.LOADER.SHA256:EZIa0CARm0H7BSdLxjxeK85WmdlDpK892f1rbGn0rjA="
        );
        assert_eq!(claims["exp"], 1_800_000_000 + LIFETIME_SECS);
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            pair.key.public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .expect("signature verifies");
        assert!(!format!("{pair:?}").contains("PRIVATE"));
        assert!(KeyPair::from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n", "a", "u").is_err());
    }
}
