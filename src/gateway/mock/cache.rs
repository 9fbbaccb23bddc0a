//! Answers already given: `MockService::respond` is a pure function of the request (generation
//! is seeded by it) except under `Prefer: dynamic=true`, so an identical request gets the
//! stored answer instead of validating and generating again. Bounded by entries and bytes,
//! oldest first out; a new commit compiles a new `MockService`, and with it an empty cache.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use super::{MockRequest, MockResponse};

/// Entries kept, at most.
const ENTRIES: usize = 1024;
/// Bytes of keys and bodies kept, at most.
const BYTES: usize = 32 * 1024 * 1024;
/// Requests whose key is longer (large bodies, many headers) are not cached.
const MAX_KEY: usize = 8 * 1024;
/// Answers whose body is larger are not cached.
const MAX_BODY: usize = 256 * 1024;

#[derive(Default)]
pub struct AnswerCache {
    inner: Mutex<Inner>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, (Vec<u8>, MockResponse)>,
    order: VecDeque<u64>,
    bytes: usize,
}

/// The request as a cache key: everything `respond` reads. `None`: not cacheable.
pub fn key(req: &MockRequest<'_>) -> Option<Vec<u8>> {
    let mut k = Vec::with_capacity(256);
    let mut put = |b: &[u8]| {
        k.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
        k.extend_from_slice(b);
    };
    put(req.method.as_str().as_bytes());
    put(req.path.as_bytes());
    put(req.query.unwrap_or("\u{0}").as_bytes());
    for (name, value) in req.headers {
        if name.as_str() == "prefer"
            && value
                .to_str()
                .map_or(true, |v| v.to_ascii_lowercase().contains("dynamic"))
        {
            return None;
        }
        put(name.as_str().as_bytes());
        put(value.as_bytes());
    }
    put(req.body);
    if let Some(p) = req.persona {
        put(serde_json::to_string(p).ok()?.as_bytes());
    }
    (k.len() <= MAX_KEY).then_some(k)
}

impl AnswerCache {
    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        h.finish()
    }

    pub fn get(&self, key: &[u8]) -> Option<MockResponse> {
        let h = self.hash(key);
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.map.get(&h) {
            Some((k, r)) if k.as_slice() == key => Some(r.clone()),
            _ => None,
        }
    }

    pub fn put(&self, key: Vec<u8>, r: &MockResponse) {
        if r.body.len() > MAX_BODY {
            return;
        }
        let h = self.hash(&key);
        let size = key.len() + r.body.len();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.map.contains_key(&h) {
            return;
        }
        while !inner.order.is_empty() && (inner.map.len() >= ENTRIES || inner.bytes + size > BYTES)
        {
            if let Some(old) = inner.order.pop_front()
                && let Some((k, r)) = inner.map.remove(&old)
            {
                inner.bytes -= k.len() + r.body.len();
            }
        }
        inner.bytes += size;
        inner.order.push_back(h);
        inner.map.insert(h, (key, r.clone()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(headers: &'a http::HeaderMap, body: &'a [u8]) -> MockRequest<'a> {
        MockRequest {
            method: &http::Method::GET,
            path: "/pets",
            query: Some("limit=2"),
            headers,
            body,
            persona: None,
        }
    }

    fn answer(body: &'static str) -> MockResponse {
        MockResponse {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from_static(body.as_bytes()),
            operation: Some("listPets".into()),
        }
    }

    #[test]
    fn identical_requests_share_an_answer_and_dynamic_ones_never_do() {
        let cache = AnswerCache::default();
        let h = http::HeaderMap::new();
        let k = key(&req(&h, b"")).expect("cacheable");
        assert!(cache.get(&k).is_none());
        cache.put(k.clone(), &answer("[1]"));
        assert_eq!(
            cache.get(&k).map(|r| r.body),
            Some(bytes::Bytes::from("[1]"))
        );
        // Another body, header or query is another key.
        assert_ne!(key(&req(&h, b"x")), Some(k.clone()));
        let mut accept = http::HeaderMap::new();
        accept.insert(
            http::header::ACCEPT,
            "application/xml".parse().expect("value"),
        );
        assert_ne!(key(&req(&accept, b"")), Some(k));
        let mut dynamic = http::HeaderMap::new();
        dynamic.insert("prefer", "code=200, dynamic=true".parse().expect("value"));
        assert_eq!(key(&req(&dynamic, b"")), None);
        let big = vec![b'a'; MAX_KEY];
        assert_eq!(key(&req(&h, &big)), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = AnswerCache::default();
        for i in 0..ENTRIES + 10 {
            cache.put(i.to_le_bytes().to_vec(), &answer("{}"));
        }
        assert_eq!(cache.len(), ENTRIES);
        assert!(
            cache.get(&0usize.to_le_bytes()).is_none(),
            "the oldest went first"
        );
        assert!(cache.get(&(ENTRIES + 9).to_le_bytes()).is_some());
    }
}
