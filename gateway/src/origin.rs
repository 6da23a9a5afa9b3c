//! The `Origin` allow-list (`--allowed-origin`) for `/ws` and `/sse`.
//!
//! Browsers attach `Origin` to every WebSocket handshake and cross-origin request, and a
//! WebSocket is not protected by CORS: without this check any page a user visits could open
//! the feed with the user's cookies or network position. Clients that are not browsers send
//! no `Origin` and are not limited by it (they could forge one anyway); tokens are what
//! authenticate them. An empty list allows every origin.

use http::{header, HeaderMap};

use crate::reply::WireError;

/// `Ok` when `allowed` is empty, the request has no `Origin`, or its `Origin` is listed.
/// Matching is exact apart from ASCII case (scheme and host are case-insensitive) and a
/// trailing `/` on a listed entry.
///
/// # Errors
/// `forbidden` (403) for an origin not in a non-empty list.
pub(crate) fn check(headers: &HeaderMap, allowed: &[String]) -> Result<(), WireError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    if allowed.iter().any(|entry| entry.trim_end_matches('/').eq_ignore_ascii_case(origin.trim())) {
        Ok(())
    } else {
        tracing::debug!(origin = %origin, "origin not allowed");
        Err(WireError::origin_not_allowed(&origin))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::reply::Code;

    fn with_origin(origin: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        headers
    }

    #[test]
    fn listed_origins_pass_ignoring_case() {
        let allowed = ["https://app.example.com".to_owned(), "http://localhost:3000/".to_owned()];
        assert!(check(&with_origin("https://app.example.com"), &allowed).is_ok());
        assert!(check(&with_origin("HTTPS://App.Example.com"), &allowed).is_ok());
        assert!(check(&with_origin("http://localhost:3000"), &allowed).is_ok());
    }

    #[test]
    fn other_origins_are_forbidden() {
        let allowed = ["https://app.example.com".to_owned()];
        for origin in ["https://evil.example.com", "http://app.example.com", "https://app.example.com:8443", "null"] {
            let error = check(&with_origin(origin), &allowed).expect_err(origin);
            assert_eq!(error.code, Code::Forbidden);
        }
    }

    #[test]
    fn no_origin_or_no_list_allows_everyone() {
        assert!(check(&HeaderMap::new(), &["https://app.example.com".to_owned()]).is_ok());
        assert!(check(&with_origin("https://anything.example"), &[]).is_ok());
    }
}
