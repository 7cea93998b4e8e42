//! API keys: with any configured, every `/api` request must carry one as
//! `Authorization: Bearer KEY`. Keys are compared in constant time and never logged.

use http::HeaderMap;
use http::header;

/// The server's API keys (none: the management API is open, as for a local server).
#[derive(Default)]
pub struct ApiKeys(Vec<Vec<u8>>);

impl ApiKeys {
    /// Keys from a comma- or newline-separated list; blanks are ignored.
    pub fn parse(list: &str) -> Self {
        Self(
            list.split([',', '\n'])
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(|key| key.as_bytes().to_vec())
                .collect(),
        )
    }

    /// These keys and `other`'s.
    pub fn merge(mut self, other: Self) -> Self {
        self.0.extend(other.0);
        self
    }

    /// How many keys there are.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Whether a request with `headers` may use the management API.
    pub fn admit(&self, headers: &HeaderMap) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        // Every key is compared, each in time independent of where it differs.
        self.0
            .iter()
            .fold(false, |found, key| found | constant_time_eq(key, presented))
    }
}

/// Whether `a == b`, in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_a_configured_key_is_admitted_once_there_are_keys() {
        assert!(ApiKeys::default().admit(&HeaderMap::new()));
        let keys = ApiKeys::parse(" alpha, ,beta\ngamma\n").merge(ApiKeys::parse("delta"));
        assert_eq!(keys.count(), 4);
        assert!(keys.admit(&bearer("Bearer beta")));
        assert!(keys.admit(&bearer("Bearer delta")));
        for refused in [
            "Bearer bet",
            "Bearer betaa",
            "Bearer ",
            "beta",
            "Basic beta",
        ] {
            assert!(!keys.admit(&bearer(refused)), "{refused}");
        }
        assert!(!keys.admit(&HeaderMap::new()));
    }
}
