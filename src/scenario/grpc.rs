//! gRPC steps: the step's keys as the method's input message (fields by name or JSON name),
//! sent over HTTP/2 (h2c) to the gateway's own listener as one unary call, and the answer's
//! message as JSON (fields by their proto names, enums by name, 64-bit integers as numbers,
//! bytes as base64) for assertions and saved values.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde_json::{Map, Value as Json};

/// Nesting depth of messages converted either way.
const MAX_DEPTH: usize = 32;

/// Why a gRPC step could not be sent or read.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("`{message}` has no field `{field}`")]
    NoField { message: String, field: String },
    #[error("field `{field}` takes {want}, not {got}")]
    Type {
        field: String,
        want: &'static str,
        got: String,
    },
    #[error("the message nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("cannot reach the gateway over HTTP/2: {0}")]
    Connect(String),
    #[error("the call failed: {0}")]
    Call(String),
    #[error("the answer's message does not decode as `{message}`: {cause}")]
    Decode { message: String, cause: String },
}

/// `json` as a message of type `desc`.
pub fn to_message(
    desc: &MessageDescriptor,
    json: &Map<String, Json>,
) -> Result<DynamicMessage, GrpcError> {
    message(desc, json, 0)
}

fn message(
    desc: &MessageDescriptor,
    json: &Map<String, Json>,
    depth: usize,
) -> Result<DynamicMessage, GrpcError> {
    if depth > MAX_DEPTH {
        return Err(GrpcError::TooDeep);
    }
    let mut m = DynamicMessage::new(desc.clone());
    for (k, v) in json {
        let field = desc
            .get_field_by_name(k)
            .or_else(|| desc.get_field_by_json_name(k))
            .ok_or_else(|| GrpcError::NoField {
                message: desc.full_name().to_string(),
                field: k.clone(),
            })?;
        if v.is_null() {
            continue;
        }
        let value = if field.is_list() {
            let items = v
                .as_array()
                .ok_or_else(|| type_error(&field, "a list", v))?;
            Value::List(
                items
                    .iter()
                    .map(|i| single(&field, i, depth))
                    .collect::<Result<_, _>>()?,
            )
        } else if field.is_map() {
            return Err(type_error(
                &field,
                "no value here (map fields are not supported)",
                v,
            ));
        } else {
            single(&field, v, depth)?
        };
        m.set_field(&field, value);
    }
    Ok(m)
}

fn type_error(field: &FieldDescriptor, want: &'static str, got: &Json) -> GrpcError {
    GrpcError::Type {
        field: field.name().to_string(),
        want,
        got: got.to_string(),
    }
}

fn single(field: &FieldDescriptor, v: &Json, depth: usize) -> Result<Value, GrpcError> {
    let int = |v: &Json| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let uint = |v: &Json| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let float = |v: &Json| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let out = match field.kind() {
        Kind::Double => float(v).map(Value::F64),
        Kind::Float => float(v).map(|f| Value::F32(f as f32)),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            int(v).and_then(|i| i32::try_from(i).ok()).map(Value::I32)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => int(v).map(Value::I64),
        Kind::Uint32 | Kind::Fixed32 => uint(v).and_then(|i| u32::try_from(i).ok()).map(Value::U32),
        Kind::Uint64 | Kind::Fixed64 => uint(v).map(Value::U64),
        Kind::Bool => v.as_bool().map(Value::Bool),
        Kind::String => match v {
            Json::String(s) => Some(Value::String(s.clone())),
            Json::Number(n) => Some(Value::String(n.to_string())),
            _ => None,
        },
        Kind::Bytes => v
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .map(|b| Value::Bytes(Bytes::from(b))),
        Kind::Enum(e) => match v {
            Json::String(s) => e
                .get_value_by_name(s)
                .map(|ev| Value::EnumNumber(ev.number())),
            Json::Number(n) => n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .map(Value::EnumNumber),
            _ => None,
        },
        Kind::Message(m) => match v {
            Json::Object(o) => return message(&m, o, depth + 1).map(Value::Message),
            _ => None,
        },
    };
    out.ok_or_else(|| type_error(field, kind_name(field.kind()), v))
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Double | Kind::Float => "a number",
        Kind::Bool => "true or false",
        Kind::String => "a string",
        Kind::Bytes => "base64 text",
        Kind::Enum(_) => "an enum value's name or number",
        Kind::Message(_) => "an object",
        _ => "an integer",
    }
}

/// A message as JSON: every field that is set, by its proto name.
pub fn to_json(m: &DynamicMessage) -> Json {
    json_of_message(m, 0)
}

fn json_of_message(m: &DynamicMessage, depth: usize) -> Json {
    let mut out = Map::new();
    if depth > MAX_DEPTH {
        return Json::Object(out);
    }
    for (field, value) in m.fields() {
        out.insert(field.name().to_string(), json_of(&field, value, depth));
    }
    Json::Object(out)
}

fn json_of(field: &FieldDescriptor, v: &Value, depth: usize) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(i) => Json::from(*i),
        Value::I64(i) => Json::from(*i),
        Value::U32(i) => Json::from(*i),
        Value::U64(i) => Json::from(*i),
        Value::F32(f) => Json::from(f64::from(*f)),
        Value::F64(f) => Json::from(*f),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or_else(|| Json::from(*n), |ev| Json::String(ev.name().to_string())),
            _ => Json::from(*n),
        },
        Value::Message(m) => json_of_message(m, depth + 1),
        Value::List(items) => Json::Array(items.iter().map(|i| json_of(field, i, depth)).collect()),
        Value::Map(entries) => {
            let value_field = field.kind().as_message().map(|m| m.map_entry_value_field());
            Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match k {
                            prost_reflect::MapKey::Bool(b) => b.to_string(),
                            prost_reflect::MapKey::I32(i) => i.to_string(),
                            prost_reflect::MapKey::I64(i) => i.to_string(),
                            prost_reflect::MapKey::U32(i) => i.to_string(),
                            prost_reflect::MapKey::U64(i) => i.to_string(),
                            prost_reflect::MapKey::String(s) => s.clone(),
                        };
                        let value = match &value_field {
                            Some(f) => json_of(f, v, depth + 1),
                            None => Json::Null,
                        };
                        (key, value)
                    })
                    .collect(),
            )
        }
    }
}

/// The answer of a unary call.
pub struct Answer {
    /// `grpc-status` (trailers, else headers); 2 (UNKNOWN) when absent.
    pub code: u16,
    pub message: Option<String>,
    /// The first message's bytes, if any.
    pub body: Option<Bytes>,
    pub source: Option<String>,
}

/// One unary call to `path` (`/<package.Service>/<Method>`) on the gateway at `addr`.
pub async fn call(
    addr: SocketAddr,
    path: &str,
    headers: &HeaderMap,
    message: &DynamicMessage,
    limit: usize,
    timeout: Duration,
) -> Result<Answer, GrpcError> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| GrpcError::Connect(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| GrpcError::Connect(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::post(format!("http://{addr}{path}"))
            .body(Full::new(crate::gateway::grpc::wire::encode(
                &message.encode_to_vec(),
            )))
            .map_err(|e| GrpcError::Call(e.to_string()))?;
        *req.headers_mut() = headers.clone();
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        req.headers_mut()
            .insert("te", http::HeaderValue::from_static("trailers"));
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| GrpcError::Call(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let collected = http_body_util::Limited::new(body, limit + 5)
            .collect()
            .await
            .map_err(|e| GrpcError::Call(e.to_string()))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let bytes = collected.to_bytes();
        driver.abort();
        let from =
            |h: &HeaderMap, k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let code = from(&trailers, "grpc-status")
            .or_else(|| from(&parts.headers, "grpc-status"))
            .and_then(|c| c.parse().ok())
            .unwrap_or(2);
        let message =
            from(&trailers, "grpc-message").or_else(|| from(&parts.headers, "grpc-message"));
        let body = crate::gateway::grpc::wire::messages(&bytes, limit)
            .map_err(|e| GrpcError::Call(e.to_string()))?
            .into_iter()
            .next();
        Ok(Answer {
            code,
            message,
            body,
            source: from(&parts.headers, "x-mockops-source"),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| GrpcError::Call(format!("no answer within {timeout:?}")))?
}

/// Decodes an answer's message as `desc`.
pub fn decode(desc: &MessageDescriptor, bytes: &[u8]) -> Result<DynamicMessage, GrpcError> {
    DynamicMessage::decode(desc.clone(), bytes).map_err(|e| GrpcError::Decode {
        message: desc.full_name().to_string(),
        cause: e.to_string(),
    })
}
