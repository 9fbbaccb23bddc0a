//! A flat, name-indexed view of the files a diff compares (messages, enums, services and
//! extensions by fully-qualified name, fields by number), with their source spans. Built once
//! per side from a [`CompiledProto`]; the rules only read it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost_reflect::{
    Cardinality, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, FileDescriptor, Kind,
    MessageDescriptor, Value,
};

use super::compile::CompiledProto;

/// A source range, 1-based and end-inclusive of the last column + 1, as `buf` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
}

/// The syntax a file declares (`""` counts as proto2, as protoc does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Proto2,
    Proto3,
    Editions,
}

impl Syntax {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Syntax::Proto2 => "proto2",
            Syntax::Proto3 => "proto3",
            Syntax::Editions => "editions",
        }
    }
}

/// How a field occurs, with presence folded in as `buf` classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    Explicit,
    Implicit,
    Required,
    Repeated,
    Map,
}

impl Card {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Card::Explicit => "optional with explicit presence",
            Card::Implicit => "optional with implicit presence",
            Card::Required => "required",
            Card::Repeated => "repeated",
            Card::Map => "map",
        }
    }
}

/// The wire kind of a field (groups kept apart from length-prefixed messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FieldKind {
    Double,
    Float,
    Int64,
    Uint64,
    Int32,
    Fixed64,
    Fixed32,
    Bool,
    String,
    Group,
    Message,
    Bytes,
    Uint32,
    Enum,
    Sfixed32,
    Sfixed64,
    Sint32,
    Sint64,
}

impl FieldKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FieldKind::Double => "double",
            FieldKind::Float => "float",
            FieldKind::Int64 => "int64",
            FieldKind::Uint64 => "uint64",
            FieldKind::Int32 => "int32",
            FieldKind::Fixed64 => "fixed64",
            FieldKind::Fixed32 => "fixed32",
            FieldKind::Bool => "bool",
            FieldKind::String => "string",
            FieldKind::Group => "group",
            FieldKind::Message => "message",
            FieldKind::Bytes => "bytes",
            FieldKind::Uint32 => "uint32",
            FieldKind::Enum => "enum",
            FieldKind::Sfixed32 => "sfixed32",
            FieldKind::Sfixed64 => "sfixed64",
            FieldKind::Sint32 => "sint32",
            FieldKind::Sint64 => "sint64",
        }
    }

    pub(crate) fn is_64bit_integer(self) -> bool {
        matches!(
            self,
            FieldKind::Int64
                | FieldKind::Sint64
                | FieldKind::Uint64
                | FieldKind::Fixed64
                | FieldKind::Sfixed64
        )
    }

    pub(crate) fn is_named(self) -> bool {
        matches!(
            self,
            FieldKind::Group | FieldKind::Message | FieldKind::Enum
        )
    }

    fn of(field_kind: &Kind, is_group: bool) -> Self {
        match field_kind {
            Kind::Double => FieldKind::Double,
            Kind::Float => FieldKind::Float,
            Kind::Int32 => FieldKind::Int32,
            Kind::Int64 => FieldKind::Int64,
            Kind::Uint32 => FieldKind::Uint32,
            Kind::Uint64 => FieldKind::Uint64,
            Kind::Sint32 => FieldKind::Sint32,
            Kind::Sint64 => FieldKind::Sint64,
            Kind::Fixed32 => FieldKind::Fixed32,
            Kind::Fixed64 => FieldKind::Fixed64,
            Kind::Sfixed32 => FieldKind::Sfixed32,
            Kind::Sfixed64 => FieldKind::Sfixed64,
            Kind::Bool => FieldKind::Bool,
            Kind::String => FieldKind::String,
            Kind::Bytes => FieldKind::Bytes,
            Kind::Message(_) if is_group => FieldKind::Group,
            Kind::Message(_) => FieldKind::Message,
            Kind::Enum(_) => FieldKind::Enum,
        }
    }
}

/// A field default, typed enough to compare across compatible kinds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DefaultValue {
    Text(Vec<u8>),
    Int(i128),
    Float(f64),
    Float32(f32),
}

impl DefaultValue {
    pub(crate) fn is_zero(&self) -> bool {
        match self {
            DefaultValue::Text(b) => b.is_empty(),
            DefaultValue::Int(i) => *i == 0,
            DefaultValue::Float(f) => *f == 0.0 && f.is_sign_positive(),
            DefaultValue::Float32(f) => *f == 0.0 && f.is_sign_positive(),
        }
    }
}

/// One field or extension.
#[derive(Debug, Clone)]
pub(crate) struct FieldInfo {
    pub number: i32,
    pub name: String,
    pub full_name: String,
    pub json_name: String,
    pub kind: FieldKind,
    /// Fully-qualified name of the message or enum type, without a leading dot.
    pub type_name: String,
    pub card: Card,
    /// Short name of the containing message (for extensions: the scope, or the file's package).
    pub parent_name: String,
    /// Extendee, fully-qualified, for extensions.
    pub extendee: Option<String>,
    pub in_map_entry: bool,
    /// Name of the (non-synthetic) oneof holding the field.
    pub oneof: Option<String>,
    pub ctype: Option<i32>,
    pub jstype: i32,
    pub default: Option<DefaultValue>,
    /// `default` printed for messages, `None` when the kind cannot have one.
    pub default_printable: String,
    pub utf8_verify: bool,
    pub java_utf8_verify: bool,
    pub file: String,
    pub path: Vec<i32>,
    /// Where to report when the field itself has no source span: for fields of a synthesized
    /// map entry, the map field's type and the map field.
    pub fallback: Vec<Vec<i32>>,
    /// Whether the field declares `[default = ...]`.
    pub explicit_default: bool,
}

/// One message.
#[derive(Debug, Clone)]
pub(crate) struct MessageInfo {
    pub full_name: String,
    pub name: String,
    /// Name within its package (`Outer.Inner`).
    pub nested_name: String,
    pub package: String,
    pub file: String,
    pub path: Vec<i32>,
    pub fields: BTreeMap<i32, FieldInfo>,
    /// Non-synthetic oneof names.
    pub oneofs: BTreeSet<String>,
    /// Reserved ranges, inclusive.
    pub reserved_ranges: Vec<(i32, i32)>,
    pub reserved_names: Vec<String>,
    /// Extension ranges, inclusive.
    pub extension_ranges: Vec<(i32, i32)>,
    pub is_map_entry: bool,
    pub message_set_wire_format: bool,
    pub no_standard_descriptor_accessor: bool,
    /// JSON format support resolved as editions features would: `true` for `ALLOW`.
    pub json_allow: bool,
}

/// One enum value.
#[derive(Debug, Clone)]
pub(crate) struct EnumValueInfo {
    pub path: Vec<i32>,
}

/// One enum.
#[derive(Debug, Clone)]
pub(crate) struct EnumInfo {
    pub full_name: String,
    pub name: String,
    pub nested_name: String,
    pub package: String,
    pub file: String,
    pub path: Vec<i32>,
    /// number -> name -> value (aliases share a number).
    pub values: BTreeMap<i32, BTreeMap<String, EnumValueInfo>>,
    pub reserved_ranges: Vec<(i32, i32)>,
    pub reserved_names: Vec<String>,
    pub closed: bool,
    pub json_allow: bool,
}

/// One RPC.
#[derive(Debug, Clone)]
pub(crate) struct MethodInfo {
    pub path: Vec<i32>,
    /// Fully-qualified, without the leading dot.
    pub input: String,
    pub output: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
    pub idempotency: i32,
}

/// One service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceInfo {
    pub full_name: String,
    pub name: String,
    pub package: String,
    pub file: String,
    pub path: Vec<i32>,
    pub methods: BTreeMap<String, MethodInfo>,
}

/// File options `buf` checks, as strings in `buf`'s spelling; `(value, source field number)`.
#[derive(Debug, Clone)]
pub(crate) struct FileInfo {
    pub package: String,
    pub syntax: Syntax,
    pub options: Vec<(&'static str, &'static str, i32, String)>,
    /// Repo-relative path, for reporting.
    pub repo_path: String,
}

/// Everything the rules compare on one side.
#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    pub files: BTreeMap<String, FileInfo>,
    pub messages: BTreeMap<String, MessageInfo>,
    pub enums: BTreeMap<String, EnumInfo>,
    pub services: BTreeMap<String, ServiceInfo>,
    /// (extendee, number) -> extension.
    pub extensions: BTreeMap<(String, i32), FieldInfo>,
    /// file -> source path -> span.
    pub spans: HashMap<String, HashMap<Vec<i32>, Span>>,
}

impl Model {
    /// Builds the model of the local files of `compiled`. `rename` maps the target's import
    /// name to the name the other side uses, so two differently-rooted targets pair up.
    pub(crate) fn build(compiled: &CompiledProto, rename: Option<(&str, &str)>) -> Model {
        let mut model = Model::default();
        for file in compiled.pool.files() {
            if !compiled.local_files.contains(file.name()) {
                continue;
            }
            let name = match rename {
                Some((from, to)) if from == file.name() => to.to_string(),
                _ => file.name().to_string(),
            };
            let source = compiled.sources.get(file.name()).map(String::as_str);
            model.add_file(&file, &name, compiled.repo_path(file.name()), source);
        }
        model
    }

    /// The span of `path` in `file`, if the source info has one.
    pub(crate) fn span(&self, file: &str, path: &[i32]) -> Option<Span> {
        self.spans.get(file).and_then(|m| m.get(path)).copied()
    }

    fn add_file(
        &mut self,
        file: &FileDescriptor,
        name: &str,
        repo_path: String,
        source: Option<&str>,
    ) {
        let fdp = file.file_descriptor_proto();
        let syntax = match fdp.syntax() {
            "proto3" => Syntax::Proto3,
            "editions" => Syntax::Editions,
            _ => Syntax::Proto2,
        };
        let mut spans = HashMap::new();
        if let Some(sci) = &fdp.source_code_info {
            for loc in &sci.location {
                let s = &loc.span;
                let span = match s.len() {
                    3 => Span {
                        line: s[0] as u32 + 1,
                        column: s[1] as u32 + 1,
                        end_line: s[0] as u32 + 1,
                        end_column: s[2] as u32 + 1,
                    },
                    4 => Span {
                        line: s[0] as u32 + 1,
                        column: s[1] as u32 + 1,
                        end_line: s[2] as u32 + 1,
                        end_column: s[3] as u32 + 1,
                    },
                    _ => continue,
                };
                // protoc keeps the first location for a path; later ones are comments' twins.
                spans.entry(loc.path.clone()).or_insert(span);
            }
        }
        self.spans.insert(name.to_string(), spans);

        let o = fdp.options.clone().unwrap_or_default();
        let b = |v: bool| v.to_string();
        let optimize = match o.optimize_for() {
            prost_types::file_options::OptimizeMode::Speed => "SPEED",
            prost_types::file_options::OptimizeMode::CodeSize => "CODE_SIZE",
            prost_types::file_options::OptimizeMode::LiteRuntime => "LITE_RUNTIME",
        };
        let options = vec![
            (
                "FILE_SAME_CC_ENABLE_ARENAS",
                "cc_enable_arenas",
                31,
                b(o.cc_enable_arenas()),
            ),
            (
                "FILE_SAME_CC_GENERIC_SERVICES",
                "cc_generic_services",
                16,
                b(o.cc_generic_services()),
            ),
            (
                "FILE_SAME_CSHARP_NAMESPACE",
                "csharp_namespace",
                37,
                o.csharp_namespace().to_string(),
            ),
            (
                "FILE_SAME_GO_PACKAGE",
                "go_package",
                11,
                o.go_package().to_string(),
            ),
            (
                "FILE_SAME_JAVA_GENERIC_SERVICES",
                "java_generic_services",
                17,
                b(o.java_generic_services()),
            ),
            (
                "FILE_SAME_JAVA_MULTIPLE_FILES",
                "java_multiple_files",
                10,
                b(o.java_multiple_files()),
            ),
            (
                "FILE_SAME_JAVA_OUTER_CLASSNAME",
                "java_outer_classname",
                8,
                o.java_outer_classname().to_string(),
            ),
            (
                "FILE_SAME_JAVA_PACKAGE",
                "java_package",
                1,
                o.java_package().to_string(),
            ),
            (
                "FILE_SAME_OBJC_CLASS_PREFIX",
                "objc_class_prefix",
                36,
                o.objc_class_prefix().to_string(),
            ),
            (
                "FILE_SAME_OPTIMIZE_FOR",
                "optimize_for",
                9,
                optimize.to_string(),
            ),
            (
                "FILE_SAME_PHP_CLASS_PREFIX",
                "php_class_prefix",
                40,
                o.php_class_prefix().to_string(),
            ),
            (
                "FILE_SAME_PHP_METADATA_NAMESPACE",
                "php_metadata_namespace",
                44,
                o.php_metadata_namespace().to_string(),
            ),
            (
                "FILE_SAME_PHP_NAMESPACE",
                "php_namespace",
                41,
                o.php_namespace().to_string(),
            ),
            (
                "FILE_SAME_PY_GENERIC_SERVICES",
                "py_generic_services",
                18,
                b(o.py_generic_services()),
            ),
            (
                "FILE_SAME_RUBY_PACKAGE",
                "ruby_package",
                45,
                o.ruby_package().to_string(),
            ),
            (
                "FILE_SAME_SWIFT_PREFIX",
                "swift_prefix",
                39,
                o.swift_prefix().to_string(),
            ),
        ];
        let java_utf8 = o.java_string_check_utf8();
        self.files.insert(
            name.to_string(),
            FileInfo {
                package: fdp.package().to_string(),
                syntax,
                options,
                repo_path,
            },
        );

        let ctx = FileCtx {
            name,
            package: fdp.package(),
            syntax,
            java_utf8,
        };
        for message in file.messages() {
            self.add_message(&ctx, &message);
        }
        for e in file.enums() {
            self.add_enum(&ctx, &e);
        }
        for ext in file.extensions() {
            self.add_extension(&ctx, &ext);
        }
        for service in file.services() {
            let mut methods = BTreeMap::new();
            for m in service.methods() {
                let mdp = m.method_descriptor_proto();
                methods.insert(
                    m.name().to_string(),
                    MethodInfo {
                        path: m.path().to_vec(),
                        input: m.input().full_name().to_string(),
                        output: m.output().full_name().to_string(),
                        client_streaming: m.is_client_streaming(),
                        server_streaming: m.is_server_streaming(),
                        idempotency: mdp
                            .options
                            .as_ref()
                            .and_then(|o| o.idempotency_level)
                            .unwrap_or(0),
                    },
                );
            }
            self.services.insert(
                service.full_name().to_string(),
                ServiceInfo {
                    full_name: service.full_name().to_string(),
                    name: service.name().to_string(),
                    package: fdp.package().to_string(),
                    file: name.to_string(),
                    path: service.path().to_vec(),
                    methods,
                },
            );
        }
        if let Some(source) = source {
            self.widen_default_spans(name, source);
        }
    }

    /// protox places `[default = 4]`'s span on the value alone; buf (protoc) spans
    /// `default = 4`. Widen to the option name so locations agree.
    fn widen_default_spans(&mut self, file: &str, source: &str) {
        let paths: Vec<Vec<i32>> = self
            .messages
            .values()
            .flat_map(|m| m.fields.values())
            .chain(self.extensions.values())
            .filter(|f| f.file == file && f.explicit_default)
            .map(|f| {
                let mut p = f.path.clone();
                p.push(7);
                p
            })
            .collect();
        let lines: Vec<&str> = source.lines().collect();
        let Some(spans) = self.spans.get_mut(file) else {
            return;
        };
        for path in paths {
            let Some(span) = spans.get_mut(&path) else {
                continue;
            };
            let Some(line) = lines.get(span.line as usize - 1) else {
                continue;
            };
            if let Some(col) = option_name_start(line, span.column as usize - 1, "default") {
                span.column = col as u32 + 1;
            }
        }
    }

    fn add_message(&mut self, ctx: &FileCtx<'_>, message: &MessageDescriptor) {
        let dp = message.descriptor_proto();
        let opts = dp.options.clone().unwrap_or_default();
        let mut fields = BTreeMap::new();
        for field in message.fields() {
            let info = field_info(ctx, &field);
            fields.insert(info.number, info);
        }
        let oneofs = message
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .map(|o| o.name().to_string())
            .collect();
        let full_name = message.full_name().to_string();
        self.messages.insert(
            full_name.clone(),
            MessageInfo {
                nested_name: nested_name(&full_name, ctx.package),
                full_name,
                name: message.name().to_string(),
                package: ctx.package.to_string(),
                file: ctx.name.to_string(),
                path: message.path().to_vec(),
                fields,
                oneofs,
                reserved_ranges: dp
                    .reserved_range
                    .iter()
                    .map(|r| (r.start(), r.end() - 1))
                    .collect(),
                reserved_names: dp.reserved_name.clone(),
                extension_ranges: dp
                    .extension_range
                    .iter()
                    .map(|r| (r.start(), r.end() - 1))
                    .collect(),
                is_map_entry: message.is_map_entry(),
                message_set_wire_format: opts.message_set_wire_format(),
                no_standard_descriptor_accessor: opts.no_standard_descriptor_accessor(),
                json_allow: ctx.syntax != Syntax::Proto2,
            },
        );
        for child in message.child_messages() {
            self.add_message(ctx, &child);
        }
        for e in message.child_enums() {
            self.add_enum(ctx, &e);
        }
        for ext in message.child_extensions() {
            self.add_extension(ctx, &ext);
        }
    }

    fn add_enum(&mut self, ctx: &FileCtx<'_>, e: &EnumDescriptor) {
        let edp = e.enum_descriptor_proto();
        let mut values: BTreeMap<i32, BTreeMap<String, EnumValueInfo>> = BTreeMap::new();
        for v in e.values() {
            values.entry(v.number()).or_default().insert(
                v.name().to_string(),
                EnumValueInfo {
                    path: v.path().to_vec(),
                },
            );
        }
        let full_name = e.full_name().to_string();
        self.enums.insert(
            full_name.clone(),
            EnumInfo {
                nested_name: nested_name(&full_name, ctx.package),
                full_name,
                name: e.name().to_string(),
                package: ctx.package.to_string(),
                file: ctx.name.to_string(),
                path: e.path().to_vec(),
                values,
                reserved_ranges: edp
                    .reserved_range
                    .iter()
                    .map(|r| (r.start(), r.end()))
                    .collect(),
                reserved_names: edp.reserved_name.clone(),
                closed: ctx.syntax == Syntax::Proto2,
                json_allow: ctx.syntax != Syntax::Proto2,
            },
        );
    }

    fn add_extension(&mut self, ctx: &FileCtx<'_>, ext: &ExtensionDescriptor) {
        let fdp = ext.field_descriptor_proto();
        let kind = FieldKind::of(&ext.kind(), ext.is_group());
        let card = match ext.cardinality() {
            Cardinality::Repeated => Card::Repeated,
            Cardinality::Required => Card::Required,
            Cardinality::Optional => Card::Explicit,
        };
        let (default, default_printable) = default_of(&ext.kind(), ext.default_value());
        let extendee = ext.containing_message().full_name().to_string();
        let parent_name = match ext.parent_message() {
            Some(m) => m.name().to_string(),
            None => ctx.package.to_string(),
        };
        let info = FieldInfo {
            number: ext.number() as i32,
            name: ext.name().to_string(),
            full_name: ext.full_name().to_string(),
            json_name: ext.json_name().to_string(),
            kind,
            type_name: named_type(&ext.kind()),
            card,
            parent_name,
            extendee: Some(extendee.clone()),
            in_map_entry: false,
            oneof: None,
            ctype: fdp.options.as_ref().and_then(|o| o.ctype),
            jstype: fdp.options.as_ref().and_then(|o| o.jstype).unwrap_or(0),
            default,
            default_printable,
            utf8_verify: ctx.syntax != Syntax::Proto2,
            java_utf8_verify: ctx.java_utf8 || ctx.syntax != Syntax::Proto2,
            file: ctx.name.to_string(),
            path: ext.path().to_vec(),
            fallback: Vec::new(),
            explicit_default: fdp.default_value.is_some(),
        };
        self.extensions.insert((extendee, info.number), info);
    }

    /// Nested names of top-level and nested messages, per file.
    pub(crate) fn messages_in_file<'a>(
        &'a self,
        file: &'a str,
    ) -> impl Iterator<Item = &'a MessageInfo> + 'a {
        self.messages.values().filter(move |m| m.file == file)
    }

    pub(crate) fn enums_in_file<'a>(&'a self, file: &'a str) -> impl Iterator<Item = &'a EnumInfo> {
        self.enums.values().filter(move |e| e.file == file)
    }

    pub(crate) fn services_in_file<'a>(
        &'a self,
        file: &'a str,
    ) -> impl Iterator<Item = &'a ServiceInfo> {
        self.services.values().filter(move |s| s.file == file)
    }

    pub(crate) fn extensions_in_file<'a>(
        &'a self,
        file: &'a str,
    ) -> impl Iterator<Item = &'a FieldInfo> {
        self.extensions.values().filter(move |e| e.file == file)
    }
}

/// Char index where `name = ` starts when it ends right before char index `value_start`.
fn option_name_start(line: &str, value_start: usize, name: &str) -> Option<usize> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = value_start.min(chars.len());
    while i > 0 && chars[i - 1].is_whitespace() {
        i -= 1;
    }
    if i == 0 || chars[i - 1] != '=' {
        return None;
    }
    i -= 1;
    while i > 0 && chars[i - 1].is_whitespace() {
        i -= 1;
    }
    let n = name.chars().count();
    if i < n || chars[i - n..i].iter().collect::<String>() != name {
        return None;
    }
    Some(i - n)
}

struct FileCtx<'a> {
    name: &'a str,
    package: &'a str,
    syntax: Syntax,
    java_utf8: bool,
}

fn nested_name(full_name: &str, package: &str) -> String {
    if package.is_empty() {
        full_name.to_string()
    } else {
        full_name
            .strip_prefix(package)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(full_name)
            .to_string()
    }
}

fn named_type(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        _ => String::new(),
    }
}

fn field_info(ctx: &FileCtx<'_>, field: &FieldDescriptor) -> FieldInfo {
    let fdp = field.field_descriptor_proto();
    let kind = FieldKind::of(&field.kind(), field.is_group());
    let card = if field.is_map() {
        Card::Map
    } else if field.is_list() {
        Card::Repeated
    } else if field.cardinality() == Cardinality::Required {
        Card::Required
    } else if field.supports_presence() {
        Card::Explicit
    } else {
        Card::Implicit
    };
    let (default, default_printable) = default_of(&field.kind(), field.default_value());
    // Defaults only exist for singular scalars and enums.
    let (default, default_printable) = if matches!(card, Card::Repeated | Card::Map)
        || matches!(kind, FieldKind::Message | FieldKind::Group)
    {
        (None, String::new())
    } else {
        (default, default_printable)
    };
    FieldInfo {
        number: field.number() as i32,
        name: field.name().to_string(),
        full_name: field.full_name().to_string(),
        json_name: field.json_name().to_string(),
        kind,
        type_name: named_type(&field.kind()),
        card,
        parent_name: field.parent_message().name().to_string(),
        extendee: None,
        in_map_entry: field.parent_message().is_map_entry(),
        oneof: field
            .containing_oneof()
            .filter(|o| !o.is_synthetic())
            .map(|o| o.name().to_string()),
        ctype: fdp.options.as_ref().and_then(|o| o.ctype),
        jstype: fdp.options.as_ref().and_then(|o| o.jstype).unwrap_or(0),
        default,
        default_printable,
        utf8_verify: ctx.syntax != Syntax::Proto2,
        java_utf8_verify: ctx.java_utf8 || ctx.syntax != Syntax::Proto2,
        file: ctx.name.to_string(),
        path: field.path().to_vec(),
        fallback: map_field_paths(field),
        explicit_default: fdp.default_value.is_some(),
    }
}

/// For a field of a map entry: the paths of the map field declaring the entry.
fn map_field_paths(field: &FieldDescriptor) -> Vec<Vec<i32>> {
    let entry = field.parent_message();
    if !entry.is_map_entry() {
        return Vec::new();
    }
    let Some(owner) = entry.parent_message() else {
        return Vec::new();
    };
    owner
        .fields()
        .find(|f| matches!(f.kind(), Kind::Message(m) if m.full_name() == entry.full_name()))
        .map(|f| {
            let mut type_path = f.path().to_vec();
            type_path.push(6);
            vec![type_path, f.path().to_vec()]
        })
        .unwrap_or_default()
}

/// The default of a field as a comparable value and as `buf` prints it.
fn default_of(kind: &Kind, value: Value) -> (Option<DefaultValue>, String) {
    match value {
        Value::Bool(b) => (Some(DefaultValue::Int(i128::from(b))), b.to_string()),
        Value::I32(i) => (Some(DefaultValue::Int(i128::from(i))), i.to_string()),
        Value::I64(i) => (Some(DefaultValue::Int(i128::from(i))), i.to_string()),
        Value::U32(i) => (Some(DefaultValue::Int(i128::from(i))), i.to_string()),
        Value::U64(i) => (Some(DefaultValue::Int(i128::from(i))), i.to_string()),
        Value::F32(f) => (Some(DefaultValue::Float32(f)), f.to_string()),
        Value::F64(f) => (Some(DefaultValue::Float(f)), f.to_string()),
        Value::String(s) => {
            let printable = format!("{s:?}");
            (Some(DefaultValue::Text(s.into_bytes())), printable)
        }
        Value::Bytes(b) => {
            let printable = format!(
                "[{}]",
                b.iter()
                    .map(|x| format!("0x{x:X}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            (Some(DefaultValue::Text(b.to_vec())), printable)
        }
        Value::EnumNumber(n) => {
            let printable = match kind {
                Kind::Enum(e) => match e.get_value(n) {
                    Some(v) => format!("{}.{}", e.name(), v.name()),
                    None => format!("{}.{}(?)", e.name(), n),
                },
                _ => n.to_string(),
            };
            (Some(DefaultValue::Int(i128::from(n))), printable)
        }
        _ => (None, String::new()),
    }
}
