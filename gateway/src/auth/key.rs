//! The key tokens are checked with: an HS256 secret (`--jwt-secret`) or a public key read
//! from a PEM file (`--jwt-public-key`), RSA for RS256 or EC P-256 for ES256.
//!
//! The algorithm follows from the key, never from the token: a token is accepted only when
//! its `alg` is the one its key type signs with, so an RS256 public key can never be used as
//! an HMAC secret (the classic algorithm-confusion attack). The key is parsed and classified
//! when the [`JwtKey`] is built, so a bad file is a clear error at startup, not a 401 for
//! every client later.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey};

/// DER of the `rsaEncryption` OID (1.2.840.113549.1.1.1).
const OID_RSA: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
/// DER of the `id-ecPublicKey` OID (1.2.840.10045.2.1).
const OID_EC: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// DER of the `prime256v1` (P-256) curve OID (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// A SubjectPublicKeyInfo names its algorithm (and curve) in its first bytes; looking only
/// there keeps key material (an RSA modulus) from ever being mistaken for an OID.
const ALGORITHM_ID_BYTES: usize = 40;

/// Why a key cannot be used. Shown to the operator at startup; never contains key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `--jwt-secret ""`.
    #[error("the HS256 secret is empty")]
    EmptySecret,
    /// The file has no PEM block (`-----BEGIN …-----`).
    #[error("not a PEM file (no readable -----BEGIN PUBLIC KEY----- block)")]
    NotPem(#[source] pem::PemError),
    /// A private key was given where the public key belongs.
    #[error("this is a private key (BEGIN {0}): give the public key instead (`openssl pkey -in KEY -pubout`)")]
    PrivateKey(String),
    /// A PEM block of another kind (a certificate, parameters, …).
    #[error("expected BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY, found BEGIN {0}")]
    NotAPublicKey(String),
    /// A public key of a type or curve the gateway does not verify.
    #[error("unsupported public key: {0}")]
    Unsupported(&'static str),
    /// The key is of a supported type but its contents do not parse.
    #[error("the public key cannot be read: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
}

/// A verification key and the one algorithm it accepts. Built only through its checked
/// constructors. Its `Debug` names the algorithm, never the key.
#[derive(Clone)]
pub struct JwtKey {
    algorithm: Algorithm,
    decoding: DecodingKey,
    /// What the key was built from, so two configs can be compared.
    source: Vec<u8>,
}

impl JwtKey {
    /// An HS256 shared secret (`--jwt-secret`), used as its UTF-8 bytes.
    ///
    /// # Errors
    /// [`KeyError::EmptySecret`]: an empty secret would accept tokens anyone can sign.
    pub fn hs256_secret(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Self { algorithm: Algorithm::HS256, decoding: DecodingKey::from_secret(secret), source: secret.to_vec() })
    }

    /// A public key from PEM text (`--jwt-public-key`): `BEGIN PUBLIC KEY` holding an RSA
    /// key (RS256) or an EC P-256 key (ES256), or `BEGIN RSA PUBLIC KEY` (RS256).
    ///
    /// # Errors
    /// A [`KeyError`] saying what the file holds instead.
    pub fn from_public_key_pem(text: &[u8]) -> Result<Self, KeyError> {
        let block = pem::parse(text).map_err(KeyError::NotPem)?;
        let tag = block.tag();
        let algorithm = match tag {
            "RSA PUBLIC KEY" => Algorithm::RS256,
            "PUBLIC KEY" => classify_spki(block.contents())?,
            _ if tag.contains("PRIVATE KEY") => return Err(KeyError::PrivateKey(tag.to_owned())),
            _ => return Err(KeyError::NotAPublicKey(tag.chars().take(40).collect())),
        };
        let decoding = match algorithm {
            Algorithm::ES256 => DecodingKey::from_ec_pem(text),
            _ => DecodingKey::from_rsa_pem(text),
        }
        .map_err(KeyError::Invalid)?;
        Ok(Self { algorithm, decoding, source: text.to_vec() })
    }

    /// The JWS `alg` this key verifies: `HS256`, `RS256` or `ES256`.
    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "HS256",
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// RS256 or ES256 from a SubjectPublicKeyInfo's algorithm identifier.
fn classify_spki(der: &[u8]) -> Result<Algorithm, KeyError> {
    let head = &der[..der.len().min(ALGORITHM_ID_BYTES)];
    let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
    if has(OID_RSA) {
        Ok(Algorithm::RS256)
    } else if has(OID_EC) {
        if has(OID_P256) {
            Ok(Algorithm::ES256)
        } else {
            Err(KeyError::Unsupported("EC keys must use the P-256 curve (ES256)"))
        }
    } else {
        Err(KeyError::Unsupported("neither RSA (RS256) nor EC P-256 (ES256)"))
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey").field("algorithm", &self.algorithm_name()).finish_non_exhaustive()
    }
}

impl PartialEq for JwtKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.source == other.source
    }
}

impl Eq for JwtKey {}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/rsa_public.pem");
    const EC_PUBLIC: &str = include_str!("../../tests/fixtures/ec_public.pem");
    const P384_PUBLIC: &str = include_str!("../../tests/fixtures/p384_public.pem");
    const EC_PRIVATE: &str = include_str!("../../tests/fixtures/ec_private.pem");

    #[test]
    fn key_type_is_detected_from_the_pem() {
        assert_eq!(JwtKey::from_public_key_pem(RSA_PUBLIC.as_bytes()).expect("rsa").algorithm_name(), "RS256");
        assert_eq!(JwtKey::from_public_key_pem(EC_PUBLIC.as_bytes()).expect("ec").algorithm_name(), "ES256");
        assert_eq!(JwtKey::hs256_secret(b"s3cret").expect("secret").algorithm_name(), "HS256");
    }

    #[test]
    fn unusable_keys_are_refused_with_a_reason() {
        assert!(matches!(JwtKey::from_public_key_pem(b"hello"), Err(KeyError::NotPem(_))));
        assert!(matches!(JwtKey::from_public_key_pem(EC_PRIVATE.as_bytes()), Err(KeyError::PrivateKey(_))));
        assert!(matches!(JwtKey::from_public_key_pem(P384_PUBLIC.as_bytes()), Err(KeyError::Unsupported(_))));
        let certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(JwtKey::from_public_key_pem(certificate.as_bytes()), Err(KeyError::NotAPublicKey(_))));
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(JwtKey::from_public_key_pem(garbage.as_bytes()).is_err());
        assert!(matches!(JwtKey::hs256_secret(b""), Err(KeyError::EmptySecret)));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = JwtKey::hs256_secret(b"very-secret-value").expect("secret");
        let shown = format!("{key:?}");
        assert!(shown.contains("HS256") && !shown.contains("very-secret"), "{shown}");
    }
}
