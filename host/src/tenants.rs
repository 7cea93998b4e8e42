//! API keys: with any configured, every management request (and invoking a function deployed
//! with `"public": false`) must present one (over HTTP, as `Authorization: Bearer KEY`). Keys are
//! compared in constant time and never logged or stored: a key's tenant is known by a
//! fingerprint of it (its SHA-256), the same in every process and release.
//!
//! Each key is a tenant with quotas, written after the key in its entry (`KEY concurrency=20
//! requests=1000/day`): at most `concurrency` of its asynchronous calls run at once (default
//! [`DEFAULT_TENANT_CONCURRENCY`]), and at most `requests` requests per minute, hour or day are
//! admitted (default unlimited); past that a request gets 429 with `Retry-After`.
//!
//! A function belongs to the key that first deployed it: other keys are told there is no such
//! function (to get, deploy over, delete, call or read the logs of), and a call's result is
//! found only by the key that made the call. A key whose entry says `admin` sees and changes
//! everything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use sha2::Digest;

use crate::Error;

/// Asynchronous calls of one key that run at once, unless its entry says otherwise.
pub const DEFAULT_TENANT_CONCURRENCY: usize = 100;

/// The host's API keys (none: management is open, as for a local server).
#[derive(Default)]
pub struct ApiKeys {
    keys: Vec<Key>,
    /// Requests counted in the current window, by tenant.
    windows: Mutex<HashMap<usize, (Instant, u64)>>,
    /// Hosts sharing the store (0: one): each counts its share of a key's request quota.
    hosts: std::sync::atomic::AtomicUsize,
}

/// One key and its quotas.
struct Key {
    secret: Vec<u8>,
    tenant: Tenant,
    /// At most this many requests per window.
    requests: Option<(u64, Duration)>,
}

/// Who made a request: a key's fingerprint (safe to store and show) and quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// `key-` and the first 16 hex digits of the key's SHA-256.
    pub id: String,
    /// Its asynchronous calls that may run at once.
    pub concurrency: usize,
    /// Whether it sees and changes every function and call (an `admin` key).
    pub admin: bool,
}

impl Tenant {
    /// Whether it may see and change a function owned by `owner`: its own, or any for an admin.
    pub fn may_use(&self, owner: Option<&str>) -> bool {
        self.admin || owner == Some(self.id.as_str())
    }

    /// Whose functions and calls it is limited to: its own id, or nobody's for an admin.
    pub(crate) fn scope(&self) -> Option<&str> {
        (!self.admin).then_some(self.id.as_str())
    }
}

impl ApiKeys {
    /// Keys from a comma- or newline-separated list of entries, each a key optionally followed
    /// by `admin`, `concurrency=N` and `requests=N/minute|hour|day`; blanks are ignored.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for entry in list.split([',', '\n']) {
            let mut words = entry.split_whitespace();
            let Some(secret) = words.next() else {
                continue;
            };
            let mut key = Key {
                secret: secret.as_bytes().to_vec(),
                tenant: Tenant {
                    id: fingerprint(secret),
                    concurrency: DEFAULT_TENANT_CONCURRENCY,
                    admin: false,
                },
                requests: None,
            };
            for setting in words {
                if setting == "admin" {
                    key.tenant.admin = true;
                    continue;
                }
                let tenant = &key.tenant.id;
                let invalid = || {
                    anyhow::anyhow!(
                        "invalid setting {setting:?} of API key {tenant}: use admin, concurrency=N or requests=N/minute|hour|day"
                    )
                };
                match setting.split_once('=').ok_or_else(invalid)? {
                    ("concurrency", n) => {
                        key.tenant.concurrency =
                            n.parse().ok().filter(|n| *n > 0).ok_or_else(invalid)?;
                    }
                    ("requests", quota) => {
                        let (n, per) = quota.split_once('/').ok_or_else(invalid)?;
                        let window = match per {
                            "minute" => Duration::from_secs(60),
                            "hour" => Duration::from_secs(3600),
                            "day" => Duration::from_secs(86_400),
                            _ => return Err(invalid()),
                        };
                        key.requests = Some((n.parse().map_err(|_| invalid())?, window));
                    }
                    _ => return Err(invalid()),
                }
            }
            keys.push(key);
        }
        Ok(Self {
            keys,
            windows: Mutex::default(),
            hosts: Default::default(),
        })
    }

    /// These keys and `other`'s.
    pub fn merge(mut self, other: Self) -> Self {
        self.keys.extend(other.keys);
        self
    }

    /// How many keys there are.
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// Whether `presented` is one of the keys (compared in constant time, every key tried).
    pub fn is_key(&self, presented: &[u8]) -> bool {
        self.keys.iter().fold(false, |found, key| {
            found | constant_time_eq(&key.secret, presented)
        })
    }

    /// Sets how many hosts share the store: each then allows its share of a key's request
    /// quota.
    pub(crate) fn set_hosts(&self, hosts: usize) {
        self.hosts
            .store(hosts, std::sync::atomic::Ordering::Relaxed);
    }

    /// Each tenant's quota of asynchronous calls running at once, by id.
    pub(crate) fn call_quotas(&self) -> HashMap<String, usize> {
        (self.keys.iter())
            .map(|key| (key.tenant.id.clone(), key.tenant.concurrency))
            .collect()
    }

    /// The tenant with fingerprint `id`, if one of the keys has it.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.keys
            .iter()
            .map(|key| &key.tenant)
            .find(|tenant| tenant.id == id)
    }

    /// Who presents key `presented`, counting the request against that key's request quota:
    /// `None` when the host has no keys; [`crate::ErrorKind::Unauthorized`] for no key or a
    /// wrong one, [`crate::ErrorKind::QuotaExceeded`] when its quota is spent.
    pub fn admit(&self, presented: Option<&[u8]>) -> Result<Option<Tenant>, Error> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let presented = presented.ok_or_else(Error::unauthorized)?;
        // Every key is compared, each in time independent of where it differs.
        let found = self
            .keys
            .iter()
            .enumerate()
            .fold(None, |found, (index, key)| {
                if constant_time_eq(&key.secret, presented) {
                    Some(index)
                } else {
                    found
                }
            });
        let index = found.ok_or_else(Error::unauthorized)?;
        let key = &self.keys[index];
        if let Some((quota, window)) = key.requests {
            // Each host of several allows its share, rounded up.
            let hosts = self.hosts.load(std::sync::atomic::Ordering::Relaxed).max(1);
            let quota = quota.div_ceil(hosts as u64);
            let now = Instant::now();
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let (start, used) = windows.entry(index).or_insert((now, 0));
            if now.duration_since(*start) >= window {
                (*start, *used) = (now, 0);
            }
            if *used >= quota {
                return Err(Error::quota_spent(
                    window.saturating_sub(now.duration_since(*start)),
                ));
            }
            *used += 1;
        }
        Ok(Some(key.tenant.clone()))
    }
}

/// A name for a key that does not reveal it, stable across processes and releases (tenants
/// are stored with their calls).
fn fingerprint(secret: &str) -> String {
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("key-{hex}")
}

/// Whether `a == b`, in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn kind(result: Result<Option<Tenant>, Error>) -> ErrorKind {
        result.unwrap_err().kind()
    }

    #[test]
    fn only_a_configured_key_is_admitted_once_there_are_keys() {
        assert_eq!(ApiKeys::default().admit(None), Ok(None));
        let keys = ApiKeys::parse(" alpha, ,beta\ngamma\n")
            .unwrap()
            .merge(ApiKeys::parse("delta concurrency=3").unwrap());
        assert_eq!(keys.count(), 4);
        let beta = keys.admit(Some(b"beta")).unwrap().unwrap();
        assert_eq!(beta.concurrency, DEFAULT_TENANT_CONCURRENCY);
        // The SHA-256 of "beta" begins f44e64e75f3948e9: the same fingerprint in every process.
        assert_eq!(beta.id, "key-f44e64e75f3948e9");
        let delta = keys.admit(Some(b"delta")).unwrap().unwrap();
        assert_eq!(delta.concurrency, 3);
        assert!(!delta.admin);
        let root = ApiKeys::parse("root admin concurrency=2").unwrap();
        let root = root.admit(Some(b"root")).unwrap().unwrap();
        assert!(root.admin && root.concurrency == 2);
        assert!(root.may_use(None) && root.may_use(Some(&beta.id)));
        assert!(beta.may_use(Some(&beta.id)) && !beta.may_use(Some(&delta.id)));
        assert!(!beta.may_use(None));
        assert_ne!(beta.id, delta.id);
        assert_eq!(keys.tenant(&delta.id), Some(&delta));
        for refused in [&b"bet"[..], b"betaa", b"", b"Bearer beta"] {
            assert_eq!(
                kind(keys.admit(Some(refused))),
                ErrorKind::Unauthorized,
                "{refused:?}"
            );
        }
        assert_eq!(kind(keys.admit(None)), ErrorKind::Unauthorized);
    }

    #[test]
    fn a_spent_request_quota_says_when_to_retry() {
        let keys = ApiKeys::parse("a requests=2/minute, b").unwrap();
        for _ in 0..2 {
            keys.admit(Some(b"a")).unwrap();
        }
        let err = keys.admit(Some(b"a")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QuotaExceeded);
        let retry_after = err.retry_after().unwrap();
        assert!(retry_after <= Duration::from_secs(60) && retry_after > Duration::from_secs(50));
        // Other keys have their own quotas.
        for _ in 0..10 {
            keys.admit(Some(b"b")).unwrap();
        }
        for bad in [
            "a requests=2",
            "a requests=x/day",
            "a concurrency=0",
            "a colour=blue",
        ] {
            assert!(ApiKeys::parse(bad).is_err(), "{bad}");
        }
    }
}
