//! gRPC server reflection (`grpc.reflection.v1.ServerReflection` and its `v1alpha` twin, the
//! same messages under another package), so standard clients (grpcurl, grpcio's reflection
//! client) list a federation's services and call them without stubs. The call is a
//! bidirectional stream: each request read from the request body is answered in turn on the
//! response body. Answers are built from the route table's descriptor pools only: the
//! services of the federation picked, and each file with every file it imports.

use std::collections::BTreeSet;
use std::convert::Infallible;

use axum::body::Body;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use prost::Message as _;
use prost_reflect::{DescriptorPool, FileDescriptor};

use super::ProtoService;
use super::wire::{self, Code, Decoder, Status};
use std::sync::Arc;

/// The reflection services' paths.
pub const V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
pub const V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/// Most requests one reflection stream answers.
const MAX_REQUESTS: usize = 10_000;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerReflectionRequest {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(oneof = "MessageRequest", tags = "3, 4, 5, 6, 7")]
    pub message_request: Option<MessageRequest>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MessageRequest {
    #[prost(string, tag = "3")]
    FileByFilename(String),
    #[prost(string, tag = "4")]
    FileContainingSymbol(String),
    #[prost(message, tag = "5")]
    FileContainingExtension(ExtensionRequest),
    #[prost(string, tag = "6")]
    AllExtensionNumbersOfType(String),
    #[prost(string, tag = "7")]
    ListServices(String),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtensionRequest {
    #[prost(string, tag = "1")]
    pub containing_type: String,
    #[prost(int32, tag = "2")]
    pub extension_number: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerReflectionResponse {
    #[prost(string, tag = "1")]
    pub valid_host: String,
    #[prost(message, optional, tag = "2")]
    pub original_request: Option<ServerReflectionRequest>,
    #[prost(oneof = "MessageResponse", tags = "4, 5, 6, 7")]
    pub message_response: Option<MessageResponse>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MessageResponse {
    #[prost(message, tag = "4")]
    FileDescriptorResponse(FileDescriptorResponse),
    #[prost(message, tag = "5")]
    AllExtensionNumbersResponse(ExtensionNumberResponse),
    #[prost(message, tag = "6")]
    ListServicesResponse(ListServiceResponse),
    #[prost(message, tag = "7")]
    ErrorResponse(ErrorResponse),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FileDescriptorResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub file_descriptor_proto: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtensionNumberResponse {
    #[prost(string, tag = "1")]
    pub base_type_name: String,
    #[prost(int32, repeated, tag = "2")]
    pub extension_number: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    pub service: Vec<ServiceResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceResponse {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorResponse {
    #[prost(int32, tag = "1")]
    pub error_code: i32,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// What reflection knows: the proto services of one federation.
pub struct Catalog {
    /// Each service's compiled spec, one per served fully qualified service name.
    pub protos: Vec<(String, Arc<ProtoService>)>,
}

impl Catalog {
    fn pools(&self) -> impl Iterator<Item = &DescriptorPool> {
        self.protos.iter().map(|(_, p)| &p.pool)
    }

    /// The answer to one request.
    pub fn answer(&self, req: ServerReflectionRequest) -> ServerReflectionResponse {
        let response = match &req.message_request {
            Some(MessageRequest::ListServices(_)) => {
                let names: BTreeSet<&str> = self.protos.iter().map(|(n, _)| n.as_str()).collect();
                MessageResponse::ListServicesResponse(ListServiceResponse {
                    service: names
                        .into_iter()
                        .map(|n| ServiceResponse { name: n.into() })
                        .collect(),
                })
            }
            Some(MessageRequest::FileByFilename(name)) => {
                match self.pools().find_map(|p| p.get_file_by_name(name)) {
                    Some(f) => files_of(&f),
                    None => not_found(format!("no file `{name}`")),
                }
            }
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                match self.pools().find_map(|p| file_of_symbol(p, symbol)) {
                    Some(f) => files_of(&f),
                    None => not_found(format!("no symbol `{symbol}`")),
                }
            }
            Some(MessageRequest::FileContainingExtension(e)) => not_found(format!(
                "no extension {} of `{}`",
                e.extension_number, e.containing_type
            )),
            Some(MessageRequest::AllExtensionNumbersOfType(t)) => {
                match self.pools().find_map(|p| p.get_message_by_name(t)) {
                    Some(m) => {
                        MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                            base_type_name: t.clone(),
                            extension_number: m.extensions().map(|x| x.number() as i32).collect(),
                        })
                    }
                    None => not_found(format!("no message type `{t}`")),
                }
            }
            None => MessageResponse::ErrorResponse(ErrorResponse {
                error_code: Code::InvalidArgument.as_u16().into(),
                error_message: "the request names no reflection request".into(),
            }),
        };
        ServerReflectionResponse {
            valid_host: req.host.clone(),
            original_request: Some(req),
            message_response: Some(response),
        }
    }
}

fn not_found(message: String) -> MessageResponse {
    MessageResponse::ErrorResponse(ErrorResponse {
        error_code: Code::NotFound.as_u16().into(),
        error_message: message,
    })
}

/// The file declaring `symbol`: a service, a method (`pkg.Service.Method`), a message, an
/// enum or an extension.
fn file_of_symbol(pool: &DescriptorPool, symbol: &str) -> Option<FileDescriptor> {
    let symbol = symbol.trim_start_matches('.');
    if let Some(s) = pool.get_service_by_name(symbol) {
        return Some(s.parent_file());
    }
    if let Some(m) = pool.get_message_by_name(symbol) {
        return Some(m.parent_file());
    }
    if let Some(e) = pool.get_enum_by_name(symbol) {
        return Some(e.parent_file());
    }
    if let Some(x) = pool.get_extension_by_name(symbol) {
        return Some(x.parent_file());
    }
    let (parent, last) = symbol.rsplit_once('.')?;
    if let Some(s) = pool.get_service_by_name(parent)
        && s.methods().any(|m| m.name() == last)
    {
        return Some(s.parent_file());
    }
    if let Some(m) = pool.get_message_by_name(parent)
        && (m.get_field_by_name(last).is_some() || m.oneofs().any(|o| o.name() == last))
    {
        return Some(m.parent_file());
    }
    None
}

/// `file` and every file it imports, transitively, `file` first, each once.
fn files_of(file: &FileDescriptor) -> MessageResponse {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![file.clone()];
    while let Some(f) = stack.pop() {
        if !seen.insert(f.name().to_string()) {
            continue;
        }
        out.push(f.file_descriptor_proto().encode_to_vec());
        stack.extend(f.dependencies());
    }
    MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
        file_descriptor_proto: out,
    })
}

/// Answers a reflection stream: each request message of `body` gets its response message as
/// it arrives; the stream ends with `OK`, or with the status of a request that could not be
/// read.
pub fn serve(catalog: Catalog, body: Incoming, limit: usize) -> Response<Body> {
    struct St {
        body: Incoming,
        decoder: Decoder,
        catalog: Catalog,
        answered: usize,
        done: bool,
    }
    let st = St {
        body,
        decoder: Decoder::new(limit),
        catalog,
        answered: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let end = |st: St, status: Status| {
                let mut trailers = HeaderMap::new();
                wire::status_headers(&mut trailers, &status);
                Some((
                    Ok::<_, Infallible>(Frame::trailers(trailers)),
                    St { done: true, ..st },
                ))
            };
            match st.decoder.next_message() {
                Err(e) => return end(st, e.status()),
                Ok(Some(msg)) => {
                    if st.answered >= MAX_REQUESTS {
                        let s = Status::new(
                            Code::ResourceExhausted,
                            format!("a reflection stream answers at most {MAX_REQUESTS} requests"),
                        );
                        return end(st, s);
                    }
                    let req = match ServerReflectionRequest::decode(msg) {
                        Ok(r) => r,
                        Err(e) => {
                            let s = Status::new(
                                Code::InvalidArgument,
                                format!("not a ServerReflectionRequest: {e}"),
                            );
                            return end(st, s);
                        }
                    };
                    st.answered += 1;
                    let answer = st.catalog.answer(req).encode_to_vec();
                    return Some((Ok(Frame::data(wire::encode(&answer))), st));
                }
                Ok(None) => {}
            }
            match st.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        st.decoder.push(&data);
                    }
                }
                Some(Err(e)) => {
                    let s = Status::new(Code::Cancelled, format!("the request stream failed: {e}"));
                    return end(st, s);
                }
                None => {
                    let status = match st.decoder.finish() {
                        Ok(()) => Status::new(Code::Ok, ""),
                        Err(e) => e.status(),
                    };
                    return end(st, status);
                }
            }
        }
    });
    let body = http_body_util::StreamBody::new(stream.boxed());
    let mut r = Response::new(Body::new(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    r
}

/// Whether `path` is one of the reflection methods.
pub fn is_reflection(path: &str) -> bool {
    path == V1 || path == V1ALPHA
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let pool = super::super::mock::tests::compile(
            "syntax = \"proto3\";\npackage t.v1;\nimport \"google/protobuf/timestamp.proto\";\nmessage R { google.protobuf.Timestamp at = 1; }\nservice S { rpc Get(R) returns (R); }\n",
        );
        let proto = ProtoService::from_pool(pool, "t/v1/t.proto".into());
        Catalog {
            protos: vec![("t.v1.S".into(), Arc::new(proto))],
        }
    }

    fn ask(c: &Catalog, r: MessageRequest) -> MessageResponse {
        c.answer(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r),
        })
        .message_response
        .expect("an answer")
    }

    fn names(r: MessageResponse) -> Vec<String> {
        match r {
            MessageResponse::FileDescriptorResponse(f) => f
                .file_descriptor_proto
                .iter()
                .map(|b| {
                    prost_types::FileDescriptorProto::decode(b.as_slice())
                        .expect("a file")
                        .name()
                        .to_string()
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lists_services_and_answers_files_with_their_imports() {
        let c = catalog();
        match ask(&c, MessageRequest::ListServices(String::new())) {
            MessageResponse::ListServicesResponse(l) => {
                assert_eq!(
                    l.service,
                    vec![ServiceResponse {
                        name: "t.v1.S".into()
                    }]
                )
            }
            other => panic!("{other:?}"),
        }
        let both = vec![
            "t/v1/t.proto".to_string(),
            "google/protobuf/timestamp.proto".to_string(),
        ];
        for symbol in ["t.v1.S", "t.v1.S.Get", "t.v1.R", ".t.v1.R", "t.v1.R.at"] {
            assert_eq!(
                names(ask(&c, MessageRequest::FileContainingSymbol(symbol.into()))),
                both,
                "{symbol}"
            );
        }
        assert_eq!(
            names(ask(
                &c,
                MessageRequest::FileByFilename("t/v1/t.proto".into())
            )),
            both
        );
        for r in [
            MessageRequest::FileContainingSymbol("t.v1.Nope".into()),
            MessageRequest::FileByFilename("nope.proto".into()),
            MessageRequest::FileContainingExtension(ExtensionRequest {
                containing_type: "t.v1.R".into(),
                extension_number: 100,
            }),
        ] {
            match ask(&c, r) {
                MessageResponse::ErrorResponse(e) => assert_eq!(e.error_code, 5),
                other => panic!("{other:?}"),
            }
        }
    }
}
