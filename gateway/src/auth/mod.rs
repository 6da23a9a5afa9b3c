//! Authentication and entitlements: JWTs checked against one key, and what they allow.
//!
//! Off unless [`GatewayConfig::auth`](crate::GatewayConfig::auth) holds a key. When on,
//! every `/ws`, `/sse` and `/snapshot` request carries a token (`Authorization: Bearer` or
//! `?token=`) that is verified before any upgrade or stream starts; a refused token is a 401
//! naming why. A verified token becomes a [`Grant`]: its `exp` (the connection ends then,
//! plus the clock leeway) and its `symbols` patterns (what the holder may subscribe to).
//! A live WebSocket replaces its grant with the `auth` op.
//!
//! The checks are jsonwebtoken's; this module decides the policy around them: the algorithm
//! comes from the key, `exp` is required, `nbf` is honoured, `aud` and `iss` are checked
//! only when configured (and then required), unsigned tokens are named as such, and the
//! leeway is at most [`MAX_LEEWAY`].

mod grant;
mod key;

use std::{borrow::Cow, fmt, time::Duration};

use base64::Engine as _;
use feed_engine::Selector;
use http::{header, HeaderMap};
use jsonwebtoken::{errors::ErrorKind, Validation};
use serde::Deserialize;

pub(crate) use self::grant::Grant;
pub use self::key::{JwtKey, KeyError};
use crate::{query, reply::WireError};

/// The most clock leeway the contract allows for `exp` and `nbf`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5);

/// How tokens are checked. Part of [`GatewayConfig`](crate::GatewayConfig); `None` there
/// means authentication is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The verification key; it also fixes the one accepted algorithm.
    pub key: JwtKey,
    /// When set, a token's `aud` must contain it (`--jwt-audience`).
    pub audience: Option<String>,
    /// When set, a token's `iss` must equal it (`--jwt-issuer`).
    pub issuer: Option<String>,
    /// Clock difference tolerated on `exp` and `nbf`, whole seconds, at most [`MAX_LEEWAY`]
    /// (more is refused by [`serve`](crate::serve)). A connection ends this long after `exp`.
    pub leeway: Duration,
}

impl AuthConfig {
    /// Tokens checked with `key`, no `aud`/`iss` checks, the full leeway.
    pub fn new(key: JwtKey) -> Self {
        Self { key, audience: None, issuer: None, leeway: MAX_LEEWAY }
    }
}

/// A token as sent by a client. Its `Debug` hides it: tokens are never logged.
pub(crate) struct Token(String);

impl Token {
    pub(crate) fn new(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a token was refused: the message of the `unauthorized` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("missing token: send Authorization: Bearer <token> or ?token=<token>")]
    Missing,
    #[error("the Authorization header is not \"Bearer <token>\"")]
    NotBearer,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsigned tokens (alg \"none\") are not accepted")]
    Unsigned,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("bad token signature")]
    BadSignature,
    #[error("wrong token algorithm: this server accepts {0} only")]
    WrongAlgorithm(&'static str),
    #[error("wrong token audience (aud)")]
    WrongAudience,
    #[error("wrong token issuer (iss)")]
    WrongIssuer,
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    #[error("token claim symbols holds {0:?}, which is not a symbol or pattern")]
    BadEntitlement(String),
}

/// The claims the gateway reads; anything else in the token is ignored.
#[derive(Deserialize)]
struct Claims {
    /// Checked by jsonwebtoken as a number first; kept lenient here (it may be a float).
    exp: Option<f64>,
    sub: Option<String>,
    symbols: Option<Vec<String>>,
}

/// The part of a JOSE header looked at before verification.
#[derive(Deserialize)]
struct HeaderAlg {
    alg: Option<String>,
}

/// Checks tokens for one server. Built once from its [`AuthConfig`].
pub(crate) struct Verifier {
    key: JwtKey,
    validation: Validation,
    leeway: Duration,
}

impl Verifier {
    pub(crate) fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(config.key.algorithm());
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        // jsonwebtoken skips an absent aud/iss; when the operator asks for one it must be there.
        validation.validate_aud = config.audience.is_some();
        if let Some(audience) = &config.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Self { key: config.key.clone(), validation, leeway: Duration::from_secs(config.leeway.as_secs()) }
    }

    /// Verifies `token` and reads its grant.
    ///
    /// # Errors
    /// A [`Rejection`] naming the first thing wrong.
    pub(crate) fn verify(&self, token: &Token) -> Result<Grant, Rejection> {
        let text = token.0.trim();
        if text.is_empty() {
            return Err(Rejection::Missing);
        }
        check_header(text)?;
        let data = jsonwebtoken::decode::<Claims>(text, self.key.decoding(), &self.validation)
            .map_err(|e| self.rejection(e.kind()))?;
        let claims = data.claims;
        let exp_s = match claims.exp {
            // Validated by jsonwebtoken as a number; whole seconds suffice, and the guard
            // keeps the float-to-integer conversion exact for every real `exp`.
            Some(exp) if exp.is_finite() && exp >= 0.0 => exp as u64,
            _ => return Err(Rejection::MissingClaim("exp".to_owned())),
        };
        let patterns = match claims.symbols {
            None => None,
            Some(items) => Some(
                items
                    .iter()
                    .map(|item| Selector::parse(item).map_err(|_| Rejection::BadEntitlement(shorten(item))))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        tracing::debug!(sub = claims.sub.as_deref(), exp = exp_s, "token verified");
        Ok(Grant::new(exp_s, self.leeway, patterns))
    }

    fn rejection(&self, kind: &ErrorKind) -> Rejection {
        match kind {
            ErrorKind::ExpiredSignature => Rejection::Expired,
            ErrorKind::ImmatureSignature => Rejection::NotYetValid,
            ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => Rejection::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                Rejection::WrongAlgorithm(self.key.algorithm_name())
            }
            ErrorKind::InvalidAudience => Rejection::WrongAudience,
            ErrorKind::InvalidIssuer => Rejection::WrongIssuer,
            ErrorKind::MissingRequiredClaim(claim) => Rejection::MissingClaim(shorten(claim)),
            ErrorKind::Json(_) => Rejection::Malformed("its header or claims are not the expected JSON"),
            ErrorKind::Base64(_) | ErrorKind::Utf8(_) => Rejection::Malformed("not base64url-encoded JSON"),
            _ => Rejection::Malformed("not a JWT"),
        }
    }
}

/// Three base64url parts, and a header that does not claim `alg: none` — jsonwebtoken would
/// call that a JSON error; the client deserves to know it sent an unsigned token.
fn check_header(token: &str) -> Result<(), Rejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Rejection::Malformed("a JWT has three dot-separated parts"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| Rejection::Malformed("its header is not base64url"))?;
    let header: HeaderAlg =
        serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed("its header is not a JSON object"))?;
    match header.alg.as_deref() {
        None => Err(Rejection::Malformed("its header has no alg")),
        Some(alg) if alg.eq_ignore_ascii_case("none") => Err(Rejection::Unsigned),
        Some(_) => Ok(()),
    }
}

/// The grant of a request to `/ws`, `/sse` or `/snapshot`: everything when auth is off,
/// else what its token allows.
///
/// # Errors
/// `unauthorized` (401) when the token is missing or refused.
pub(crate) fn authenticate(
    verifier: Option<&Verifier>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Grant, WireError> {
    let Some(verifier) = verifier else { return Ok(Grant::everything()) };
    let token = request_token(headers, query).map_err(|rejection| WireError::unauthorized(&rejection))?;
    verifier.verify(&token).map_err(|rejection| {
        tracing::debug!(%rejection, "request refused");
        WireError::unauthorized(&rejection)
    })
}

/// `Authorization: Bearer <token>` (scheme case-insensitive), else `?token=`.
fn request_token(headers: &HeaderMap, query: Option<&str>) -> Result<Token, Rejection> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| Rejection::NotBearer)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(Rejection::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Rejection::NotBearer);
        }
        return Ok(Token(token.trim().to_owned()));
    }
    match query::param(query, "token") {
        Some(token) if !token.is_empty() => Ok(Token(Cow::into_owned(token))),
        _ => Err(Rejection::Missing),
    }
}

/// Client text shown back in a message, bounded.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use http::HeaderValue;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};

    use super::*;

    const SECRET: &[u8] = b"unit-test-secret";

    fn now_s() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
    }

    fn verifier(configure: impl FnOnce(&mut AuthConfig)) -> Verifier {
        let mut config = AuthConfig::new(JwtKey::hs256_secret(SECRET).expect("secret"));
        config.leeway = Duration::ZERO;
        configure(&mut config);
        Verifier::new(&config)
    }

    fn sign(claims: &Value) -> Token {
        Token(encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET)).expect("sign"))
    }

    fn unsigned(claims: &Value) -> Token {
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        Token(format!("{}.{}.", b64(&json!({"alg":"none","typ":"JWT"})), b64(claims)))
    }

    #[test]
    fn valid_token_grants_its_symbols_until_exp() {
        let exp = now_s() + 60;
        let grant = verifier(|_| {}).verify(&sign(&json!({"exp": exp, "sub": "u1", "symbols": ["FX:*"]}))).expect("ok");
        assert_eq!(grant.exp_s(), Some(exp));
        assert!(grant.permits(&Selector::parse("FX:EUR/USD").expect("valid")));
        assert!(!grant.permits(&Selector::All));
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let v = verifier(|c| {
            c.audience = Some("feed".into());
            c.issuer = Some("issuer".into());
        });
        let good = json!({"exp": now_s() + 60, "aud": "feed", "iss": "issuer"});
        let with = |field: &str, value: Value| {
            let mut claims = good.clone();
            claims[field] = value;
            claims
        };
        assert!(v.verify(&sign(&good)).is_ok());
        let cases = [
            (Token("".into()), Rejection::Missing),
            (Token("abc".into()), Rejection::Malformed("a JWT has three dot-separated parts")),
            (unsigned(&good), Rejection::Unsigned),
            (sign(&with("exp", json!(now_s() - 30))), Rejection::Expired),
            (sign(&with("nbf", json!(now_s() + 30))), Rejection::NotYetValid),
            (sign(&with("aud", json!("other"))), Rejection::WrongAudience),
            (sign(&with("iss", json!("other"))), Rejection::WrongIssuer),
            (sign(&json!({"exp": now_s() + 60, "iss": "issuer"})), Rejection::MissingClaim("aud".into())),
            (sign(&json!({"aud": "feed", "iss": "issuer"})), Rejection::MissingClaim("exp".into())),
            (sign(&with("symbols", json!(["ok", "b d"]))), Rejection::BadEntitlement("b d".into())),
        ];
        for (token, expected) in cases {
            assert_eq!(v.verify(&token).err(), Some(expected.clone()), "{expected}");
        }
        let other_key = encode(&Header::new(Algorithm::HS256), &good, &EncodingKey::from_secret(b"other")).expect("sign");
        assert_eq!(v.verify(&Token(other_key)).err(), Some(Rejection::BadSignature));
        let hs384 = encode(&Header::new(Algorithm::HS384), &good, &EncodingKey::from_secret(SECRET)).expect("sign");
        assert_eq!(v.verify(&Token(hs384)).err(), Some(Rejection::WrongAlgorithm("HS256")));
    }

    #[test]
    fn leeway_accepts_a_token_just_expired() {
        let claims = json!({"exp": now_s() - 2});
        assert_eq!(verifier(|_| {}).verify(&sign(&claims)).err(), Some(Rejection::Expired));
        assert!(verifier(|c| c.leeway = MAX_LEEWAY).verify(&sign(&claims)).is_ok());
    }

    #[test]
    fn header_token_wins_over_query_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_token(&headers, Some("token=q")).map(|t| t.0), Ok("q".to_owned()));
        assert_eq!(request_token(&headers, None).err(), Some(Rejection::Missing));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer h"));
        assert_eq!(request_token(&headers, Some("token=q")).map(|t| t.0), Ok("h".to_owned()));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dTpw"));
        assert_eq!(request_token(&headers, None).err(), Some(Rejection::NotBearer));
    }

    #[test]
    fn tokens_are_never_shown_in_debug() {
        assert_eq!(format!("{:?}", Token("secret.token.here".into())), "Token(<redacted>)");
    }
}
