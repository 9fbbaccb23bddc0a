//! The gRPC wire format over HTTP/2: 5-byte length-prefixed messages (one flag byte, a
//! big-endian length), status codes, `grpc-timeout`, the percent-encoded `grpc-message`, and
//! responses with their status in trailers (or in the headers, "Trailers-Only", for an answer
//! without a message).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::body::Frame;

/// Length of a message's prefix: the compression flag and a 4-byte length.
pub const PREFIX: usize = 5;

/// gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// The code of a `grpc-status` value (`Unknown` for anything else).
    pub fn from_u16(n: u16) -> Code {
        match n {
            0 => Code::Ok,
            1 => Code::Cancelled,
            3 => Code::InvalidArgument,
            4 => Code::DeadlineExceeded,
            5 => Code::NotFound,
            6 => Code::AlreadyExists,
            7 => Code::PermissionDenied,
            8 => Code::ResourceExhausted,
            9 => Code::FailedPrecondition,
            10 => Code::Aborted,
            11 => Code::OutOfRange,
            12 => Code::Unimplemented,
            13 => Code::Internal,
            14 => Code::Unavailable,
            15 => Code::DataLoss,
            16 => Code::Unauthenticated,
            _ => Code::Unknown,
        }
    }

    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code a non-200 HTTP status from an upstream stands for (gRPC's "HTTP to gRPC
    /// status code mapping").
    pub fn of_http(status: StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502..=504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The HTTP status class the code is counted under in the gateway's metrics (`2xx` for
    /// OK, `4xx` for what the caller did, `5xx` for what the service or the gateway did).
    pub fn status_class(self) -> &'static str {
        match self {
            Code::Ok => "2xx",
            Code::Cancelled
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unauthenticated
            | Code::ResourceExhausted => "4xx",
            _ => "5xx",
        }
    }
}

/// A status the gateway answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }

    /// This status as a response without a message ("Trailers-Only": the status is in the
    /// headers and the body is empty).
    pub fn response(&self) -> Response<Body> {
        let mut r = Response::new(Body::empty());
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        status_headers(h, self);
        r
    }
}

/// Sets `grpc-status` and (when not empty) `grpc-message`.
pub fn status_headers(h: &mut HeaderMap, s: &Status) {
    h.insert("grpc-status", HeaderValue::from(s.code.as_u16()));
    if !s.message.is_empty()
        && let Ok(v) = HeaderValue::from_str(&percent_encode(&s.message))
    {
        h.insert("grpc-message", v);
    }
}

/// A `200` response carrying `message` and then `OK` in the trailers.
pub fn ok_response(message: Bytes) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    status_headers(&mut trailers, &Status::new(Code::Ok, ""));
    with_trailers(HeaderMap::new(), vec![encode(&message)], trailers)
}

/// A `200` response: `headers` (with `content-type: application/grpc` added when missing),
/// `frames` (already length-prefixed) and `trailers`.
pub fn with_trailers(
    mut headers: HeaderMap,
    frames: Vec<Bytes>,
    trailers: HeaderMap,
) -> Response<Body> {
    headers
        .entry(http::header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/grpc"));
    let items: Vec<Result<Frame<Bytes>, Infallible>> = frames
        .into_iter()
        .map(|f| Ok(Frame::data(f)))
        .chain(std::iter::once(Ok(Frame::trailers(trailers))))
        .collect();
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(items));
    let mut r = Response::new(Body::new(body));
    *r.headers_mut() = headers;
    r
}

/// `message` with its 5-byte prefix (uncompressed).
pub fn encode(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(PREFIX + message.len());
    b.extend_from_slice(&[0]);
    b.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    b.extend_from_slice(message);
    b.freeze()
}

/// Why a request's messages could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the request ends inside a message prefix ({0} of 5 bytes)")]
    ShortPrefix(usize),
    #[error("a message announces {announced} bytes but only {left} follow")]
    Truncated { announced: usize, left: usize },
    #[error("a message of {len} bytes is larger than the gateway's limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error(
        "the message is compressed (flag 1) and the gateway reads only uncompressed messages \
         (grpc-encoding: identity)"
    )]
    Compressed,
    #[error("the message flag is {0}, not 0 or 1")]
    BadFlag(u8),
}

impl FrameError {
    pub fn status(&self) -> Status {
        let code = match self {
            FrameError::TooLarge { .. } => Code::ResourceExhausted,
            FrameError::Compressed => Code::Unimplemented,
            _ => Code::InvalidArgument,
        };
        Status::new(code, self.to_string())
    }
}

/// Reads length-prefixed messages from a byte stream fed in chunks.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    limit: usize,
}

impl Decoder {
    /// A decoder refusing messages over `limit` bytes.
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            limit,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole message, `None` when more bytes are needed. A message larger than the
    /// limit is refused as soon as its prefix is read.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let flag = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        match flag {
            0 => {}
            1 => return Err(FrameError::Compressed),
            f => return Err(FrameError::BadFlag(f)),
        }
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        self.buf.advance(PREFIX);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Checks that nothing is left half read once the stream ended.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            n if n < PREFIX => Err(FrameError::ShortPrefix(n)),
            n => Err(FrameError::Truncated {
                announced: u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize,
                left: n - PREFIX,
            }),
        }
    }
}

/// Every message of a whole request body.
pub fn messages(body: &[u8], limit: usize) -> Result<Vec<Bytes>, FrameError> {
    let mut d = Decoder::new(limit);
    d.push(body);
    let mut out = Vec::new();
    while let Some(m) = d.next_message()? {
        out.push(m);
    }
    d.finish()?;
    Ok(out)
}

/// `grpc-timeout`: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `d` as a `grpc-timeout` value (milliseconds, rounded up).
pub fn format_timeout(d: Duration) -> String {
    let ms = d.as_millis().clamp(1, 99_999_999);
    format!("{ms}m")
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The reverse of [`percent_encode`] (invalid escapes are kept as written).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_and_bad_framing_is_named() {
        let mut body = encode(b"abc").to_vec();
        body.extend_from_slice(&encode(b""));
        assert_eq!(
            messages(&body, 10),
            Ok(vec![Bytes::from_static(b"abc"), Bytes::new()])
        );
        assert_eq!(
            messages(&[0, 0, 0, 0, 9, 1, 2], 100),
            Err(FrameError::Truncated {
                announced: 9,
                left: 2
            })
        );
        assert_eq!(messages(&[0, 0, 0], 100), Err(FrameError::ShortPrefix(3)));
        assert_eq!(
            messages(&[0, 0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                limit: 100
            })
        );
        assert_eq!(messages(&[1, 0, 0, 0, 0], 100), Err(FrameError::Compressed));
        assert_eq!(messages(&[7, 0, 0, 0, 0], 100), Err(FrameError::BadFlag(7)));
        assert_eq!(messages(&[], 100), Ok(vec![]));
    }

    #[test]
    fn a_decoder_fed_in_pieces_yields_each_message_once_whole() {
        let whole = [encode(b"hello").to_vec(), encode(b"world").to_vec()].concat();
        let mut d = Decoder::new(64);
        let mut got = Vec::new();
        for b in &whole {
            d.push(&[*b]);
            while let Some(m) = d.next_message().expect("valid") {
                got.push(m);
            }
        }
        assert_eq!(got, vec![Bytes::from("hello"), Bytes::from("world")]);
        assert!(d.finish().is_ok());
    }

    #[test]
    fn timeouts_and_messages() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("123456789m"), None);
        assert_eq!(parse_timeout("m"), None);
        assert_eq!(parse_timeout("-1m"), None);
        assert_eq!(parse_timeout("10x"), None);
        assert_eq!(format_timeout(Duration::from_micros(10)), "1m");
        let m = "no 100% café\n";
        assert_eq!(percent_encode(m), "no 100%25 caf%C3%A9%0A");
        assert_eq!(percent_decode(&percent_encode(m)), m);
        assert_eq!(percent_decode("50%"), "50%");
    }
}
