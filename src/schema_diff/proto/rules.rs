//! The breaking-change rules of `buf breaking` (v2 configuration, buf 1.75), evaluated over two
//! [`Model`]s, plus the additions `buf` does not report. Rule ids, categories, pairing (files by
//! path, types by fully-qualified name, fields and enum values by number, RPCs by name) and
//! reported locations follow `buf`, so findings can be compared one to one.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Card, DefaultValue, EnumInfo, FieldInfo, FieldKind, MessageInfo, Model, Span};
use super::reach::Dir;

/// A `buf breaking` category. Categories overlap but do not strictly nest: a few rules are
/// specific to one (`FIELD_WIRE_COMPATIBLE_TYPE` only in WIRE, `PACKAGE_*` only in PACKAGE).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    /// Generated-code compatibility per file (buf's default).
    #[default]
    File,
    /// Generated-code compatibility per package.
    Package,
    /// Binary and JSON encoding compatibility.
    WireJson,
    /// Binary encoding compatibility only.
    Wire,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::File => "FILE",
            Category::Package => "PACKAGE",
            Category::WireJson => "WIRE_JSON",
            Category::Wire => "WIRE",
        }
    }
}

/// A category name buf does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category `{0}` (expected FILE, PACKAGE, WIRE_JSON or WIRE)")]
pub struct UnknownCategory(pub String);

impl std::str::FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "FILE" => Ok(Category::File),
            "PACKAGE" => Ok(Category::Package),
            "WIRE_JSON" => Ok(Category::WireJson),
            "WIRE" => Ok(Category::Wire),
            other => Err(UnknownCategory(other.to_string())),
        }
    }
}

const F: u8 = 1;
const P: u8 = 2;
const WJ: u8 = 4;
const W: u8 = 8;

/// Every breaking rule with the categories it belongs to (`buf config ls-breaking-rules
/// --version v2`, 1.75.0).
pub const RULES: &[(&str, u8)] = &[
    ("EXTENSION_NO_DELETE", F),
    ("SERVICE_NO_DELETE", F),
    ("ENUM_NO_DELETE", F),
    ("FILE_NO_DELETE", F),
    ("MESSAGE_NO_DELETE", F),
    ("ENUM_SAME_TYPE", F | P),
    ("FIELD_SAME_CARDINALITY", F | P),
    ("FIELD_SAME_CPP_STRING_TYPE", F | P),
    ("FIELD_SAME_JAVA_UTF8_VALIDATION", F | P),
    ("FIELD_SAME_JSTYPE", F | P),
    ("FIELD_SAME_UTF8_VALIDATION", F | P),
    ("FILE_SAME_CC_ENABLE_ARENAS", F | P),
    ("FILE_SAME_CC_GENERIC_SERVICES", F | P),
    ("FILE_SAME_CSHARP_NAMESPACE", F | P),
    ("FILE_SAME_GO_PACKAGE", F | P),
    ("FILE_SAME_JAVA_GENERIC_SERVICES", F | P),
    ("FILE_SAME_JAVA_MULTIPLE_FILES", F | P),
    ("FILE_SAME_JAVA_OUTER_CLASSNAME", F | P),
    ("FILE_SAME_JAVA_PACKAGE", F | P),
    ("FILE_SAME_OBJC_CLASS_PREFIX", F | P),
    ("FILE_SAME_OPTIMIZE_FOR", F | P),
    ("FILE_SAME_PHP_CLASS_PREFIX", F | P),
    ("FILE_SAME_PHP_METADATA_NAMESPACE", F | P),
    ("FILE_SAME_PHP_NAMESPACE", F | P),
    ("FILE_SAME_PY_GENERIC_SERVICES", F | P),
    ("FILE_SAME_RUBY_PACKAGE", F | P),
    ("FILE_SAME_SWIFT_PREFIX", F | P),
    ("RPC_NO_DELETE", F | P),
    ("ENUM_VALUE_NO_DELETE", F | P),
    ("EXTENSION_MESSAGE_NO_DELETE", F | P),
    ("FIELD_NO_DELETE", F | P),
    ("FIELD_SAME_TYPE", F | P),
    ("FILE_SAME_SYNTAX", F | P),
    ("MESSAGE_NO_REMOVE_STANDARD_DESCRIPTOR_ACCESSOR", F | P),
    ("ONEOF_NO_DELETE", F | P),
    ("ENUM_SAME_JSON_FORMAT", F | P | WJ),
    ("ENUM_VALUE_SAME_NAME", F | P | WJ),
    ("FIELD_SAME_JSON_NAME", F | P | WJ),
    ("FIELD_SAME_NAME", F | P | WJ),
    ("MESSAGE_SAME_JSON_FORMAT", F | P | WJ),
    ("FIELD_SAME_DEFAULT", F | P | WJ | W),
    ("FIELD_SAME_ONEOF", F | P | WJ | W),
    ("FILE_SAME_PACKAGE", F | P | WJ | W),
    ("MESSAGE_SAME_REQUIRED_FIELDS", F | P | WJ | W),
    ("RESERVED_ENUM_NO_DELETE", F | P | WJ | W),
    ("RESERVED_MESSAGE_NO_DELETE", F | P | WJ | W),
    ("RPC_SAME_CLIENT_STREAMING", F | P | WJ | W),
    ("RPC_SAME_IDEMPOTENCY_LEVEL", F | P | WJ | W),
    ("RPC_SAME_REQUEST_TYPE", F | P | WJ | W),
    ("RPC_SAME_RESPONSE_TYPE", F | P | WJ | W),
    ("RPC_SAME_SERVER_STREAMING", F | P | WJ | W),
    ("PACKAGE_ENUM_NO_DELETE", P),
    ("PACKAGE_EXTENSION_NO_DELETE", P),
    ("PACKAGE_MESSAGE_NO_DELETE", P),
    ("PACKAGE_NO_DELETE", P),
    ("PACKAGE_SERVICE_NO_DELETE", P),
    ("ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED", WJ),
    ("FIELD_NO_DELETE_UNLESS_NAME_RESERVED", WJ),
    ("FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY", WJ),
    ("FIELD_WIRE_JSON_COMPATIBLE_TYPE", WJ),
    ("ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED", WJ | W),
    ("FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED", WJ | W),
    ("FIELD_WIRE_COMPATIBLE_CARDINALITY", W),
    ("FIELD_WIRE_COMPATIBLE_TYPE", W),
];

/// Ids of the non-breaking additions reported at INFO (not `buf` rules).
pub const ADDITION_RULES: &[&str] = &[
    "MESSAGE_ADDED",
    "ENUM_ADDED",
    "SERVICE_ADDED",
    "FIELD_ADDED",
    "ENUM_VALUE_ADDED",
    "RPC_ADDED",
    "EXTENSION_ADDED",
];

/// Whether breaking rule `rule` is part of `category`.
pub fn rule_in_category(rule: &str, category: Category) -> bool {
    let bit = match category {
        Category::File => F,
        Category::Package => P,
        Category::WireJson => WJ,
        Category::Wire => W,
    };
    RULES
        .iter()
        .any(|(id, cats)| *id == rule && cats & bit != 0)
}

/// What a finding is about, to find the operations it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    /// A message or enum (fully-qualified), looked up on the given side.
    Type(String, Side),
    /// One RPC (`pkg.Service/Method`), with the side of the exchange when the rule says so.
    Op(String, Option<Dir>),
    /// Every RPC of a service, looked up on the given side.
    Service(String, Side),
    /// Every RPC of the services of a file, on both sides.
    File(String),
    /// Nothing reachable (a deleted package).
    Nothing,
}

/// Which side's model a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Old,
    New,
    Both,
}

/// One finding before it is turned into a [`crate::schema_diff::Change`].
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub rule: &'static str,
    /// Import name of the file the finding is reported in, and which side it is from.
    pub file: Option<(String, Side)>,
    pub span: Option<Span>,
    pub element: String,
    pub message: String,
    pub subject: Subject,
}

struct Out<'a> {
    old: &'a Model,
    new: &'a Model,
    found: Vec<Raw>,
}

impl Out<'_> {
    /// Records a finding located in the new file `file` at the first of `paths` that has a span.
    fn at_new(
        &mut self,
        rule: &'static str,
        file: &str,
        paths: &[&[i32]],
        element: String,
        message: String,
        subject: Subject,
    ) {
        let span = paths.iter().find_map(|p| self.new.span(file, p));
        self.found.push(Raw {
            rule,
            file: Some((file.to_string(), Side::New)),
            span,
            element,
            message,
            subject,
        });
    }

    /// [`Out::at_new`] for a field finding: `paths` first, then the field's fallbacks.
    fn at_field(
        &mut self,
        rule: &'static str,
        field: &FieldInfo,
        paths: &[&[i32]],
        element: String,
        message: String,
        subject: Subject,
    ) {
        let mut all: Vec<&[i32]> = paths.to_vec();
        all.extend(field.fallback.iter().map(Vec::as_slice));
        self.at_new(rule, &field.file, &all, element, message, subject);
    }

    fn raw(&mut self, raw: Raw) {
        self.found.push(raw);
    }
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn join_quoted<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(|n| q(n))
        .collect::<Vec<_>>()
        .join(", ")
}

fn with(path: &[i32], tail: &[i32]) -> Vec<i32> {
    let mut p = path.to_vec();
    p.extend_from_slice(tail);
    p
}

/// `Field "3" with name "x" on message "M"`, as `buf` describes a field.
fn describe(f: &FieldInfo) -> String {
    describe_named(
        f,
        Some(if f.extendee.is_some() {
            &f.full_name
        } else {
            &f.name
        }),
    )
}

fn describe_named(f: &FieldInfo, name: Option<&str>) -> String {
    let name = match name {
        Some(n) if !n.is_empty() => format!(" with name {}", q(n)),
        _ => String::new(),
    };
    match &f.extendee {
        Some(ext) => format!(
            "Extension {}{} on message {}",
            q(&f.number.to_string()),
            name,
            q(ext)
        ),
        None => format!(
            "Field {}{} on message {}",
            q(&f.number.to_string()),
            name,
            q(&f.parent_name)
        ),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn field_element(f: &FieldInfo) -> String {
    f.full_name.clone()
}

/// The subject of a field finding: its message, or for an extension, its extendee.
fn field_subject(f: &FieldInfo, msg_full: &str) -> Subject {
    match &f.extendee {
        Some(ext) => Subject::Type(ext.clone(), Side::Both),
        None => Subject::Type(msg_full.to_string(), Side::Both),
    }
}

/// Evaluates every breaking rule; the caller keeps those of the configured category.
pub(crate) fn breaking(old: &Model, new: &Model) -> Vec<Raw> {
    let mut out = Out {
        old,
        new,
        found: Vec::new(),
    };
    files(&mut out);
    packages(&mut out);
    for (name, om) in &old.messages {
        if let Some(nm) = new.messages.get(name) {
            message_pair(&mut out, om, nm);
            for (number, of) in &om.fields {
                if let Some(nf) = nm.fields.get(number) {
                    field_pair(&mut out, of, nf, &nm.full_name);
                }
            }
        }
    }
    for (key, of) in &old.extensions {
        if let Some(nf) = new.extensions.get(key) {
            field_pair(&mut out, of, nf, &key.0);
        }
    }
    for (name, oe) in &old.enums {
        if let Some(ne) = new.enums.get(name) {
            enum_pair(&mut out, oe, ne);
        }
    }
    services(&mut out);
    out.found
}

fn files(out: &mut Out<'_>) {
    let (old, new) = (out.old, out.new);
    for (name, of) in &old.files {
        let Some(nf) = new.files.get(name) else {
            // buf names no file for a deleted file; the element carries its path.
            out.raw(Raw {
                rule: "FILE_NO_DELETE",
                file: None,
                span: None,
                element: of.repo_path.clone(),
                message: format!("Previously present file {} was deleted.", q(name)),
                subject: Subject::File(name.clone()),
            });
            continue;
        };
        let subject = || Subject::File(name.clone());
        if of.package != nf.package {
            out.at_new(
                "FILE_SAME_PACKAGE",
                name,
                &[&[2]],
                nf.repo_path.clone(),
                format!(
                    "File package changed from {} to {}.",
                    q(&of.package),
                    q(&nf.package)
                ),
                subject(),
            );
        }
        if of.syntax != nf.syntax {
            out.at_new(
                "FILE_SAME_SYNTAX",
                name,
                &[&[12]],
                nf.repo_path.clone(),
                format!(
                    "File syntax changed from {} to {}.",
                    q(of.syntax.as_str()),
                    q(nf.syntax.as_str())
                ),
                subject(),
            );
        }
        for (o, n) in of.options.iter().zip(&nf.options) {
            if o.3 != n.3 {
                out.at_new(
                    n.0,
                    name,
                    &[&[8, n.2]],
                    nf.repo_path.clone(),
                    format!(
                        "File option {} changed from {} to {}.",
                        q(n.1),
                        q(&o.3),
                        q(&n.3)
                    ),
                    subject(),
                );
            }
        }

        // Types deleted from this file, by name within the package.
        let new_msgs: BTreeMap<&str, &MessageInfo> = new
            .messages_in_file(name)
            .map(|m| (m.nested_name.as_str(), m))
            .collect();
        for om in old.messages_in_file(name) {
            if !new_msgs.contains_key(om.nested_name.as_str()) {
                let parent = nearest_parent(&new_msgs, &om.nested_name);
                deleted_in_file(
                    out,
                    "MESSAGE_NO_DELETE",
                    name,
                    parent,
                    om.full_name.clone(),
                    format!(
                        "Previously present message {} was deleted from file.",
                        q(&om.nested_name)
                    ),
                    Subject::Type(om.full_name.clone(), Side::Old),
                );
            }
        }
        let new_enums: BTreeSet<&str> = new
            .enums_in_file(name)
            .map(|e| e.nested_name.as_str())
            .collect();
        for oe in old.enums_in_file(name) {
            if !new_enums.contains(oe.nested_name.as_str()) {
                let parent = nearest_parent(&new_msgs, &oe.nested_name);
                deleted_in_file(
                    out,
                    "ENUM_NO_DELETE",
                    name,
                    parent,
                    oe.full_name.clone(),
                    format!(
                        "Previously present enum {} was deleted from file.",
                        q(&oe.nested_name)
                    ),
                    Subject::Type(oe.full_name.clone(), Side::Old),
                );
            }
        }
        let new_exts: BTreeSet<String> = new
            .extensions_in_file(name)
            .map(|e| nested(&e.full_name, &nf.package))
            .collect();
        for oe in old.extensions_in_file(name) {
            let nested_name = nested(&oe.full_name, &of.package);
            if !new_exts.contains(&nested_name) {
                let parent = nearest_parent(&new_msgs, &nested_name);
                deleted_in_file(
                    out,
                    "EXTENSION_NO_DELETE",
                    name,
                    parent,
                    oe.full_name.clone(),
                    format!(
                        "Previously present extension {} was deleted from file.",
                        q(&nested_name)
                    ),
                    field_subject(oe, ""),
                );
            }
        }
        let new_services: BTreeSet<&str> = new
            .services_in_file(name)
            .map(|s| s.name.as_str())
            .collect();
        for os in old.services_in_file(name) {
            if !new_services.contains(os.name.as_str()) {
                out.raw(Raw {
                    rule: "SERVICE_NO_DELETE",
                    file: Some((name.clone(), Side::New)),
                    span: None,
                    element: os.full_name.clone(),
                    message: format!(
                        "Previously present service {} was deleted from file.",
                        q(&os.name)
                    ),
                    subject: Subject::Service(os.full_name.clone(), Side::Old),
                });
            }
        }
    }
}

fn nested(full_name: &str, package: &str) -> String {
    if package.is_empty() {
        return full_name.to_string();
    }
    full_name
        .strip_prefix(package)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(full_name)
        .to_string()
}

/// The closest enclosing message of a deleted element that still exists, by nested name.
fn nearest_parent<'a>(
    messages: &BTreeMap<&str, &'a MessageInfo>,
    nested_name: &str,
) -> Option<&'a MessageInfo> {
    let parts: Vec<&str> = nested_name.split('.').collect();
    (1..parts.len())
        .rev()
        .find_map(|i| messages.get(parts[..i].join(".").as_str()).copied())
}

fn deleted_in_file(
    out: &mut Out<'_>,
    rule: &'static str,
    file: &str,
    parent: Option<&MessageInfo>,
    element: String,
    message: String,
    subject: Subject,
) {
    match parent {
        Some(p) => {
            let path = p.path.clone();
            let pfile = p.file.clone();
            out.at_new(rule, &pfile, &[&path], element, message, subject);
        }
        None => out.raw(Raw {
            rule,
            file: Some((file.to_string(), Side::New)),
            span: None,
            element,
            message,
            subject,
        }),
    }
}

fn packages(out: &mut Out<'_>) {
    let (old, new) = (out.old, out.new);
    let old_pkgs: BTreeSet<&str> = old.files.values().map(|f| f.package.as_str()).collect();
    let new_pkgs: BTreeSet<&str> = new.files.values().map(|f| f.package.as_str()).collect();
    for pkg in &old_pkgs {
        if !new_pkgs.contains(pkg) {
            // buf names no file for a deleted package.
            out.raw(Raw {
                rule: "PACKAGE_NO_DELETE",
                file: None,
                span: None,
                element: pkg.to_string(),
                message: format!("Previously present package {} was deleted.", q(pkg)),
                subject: Subject::Nothing,
            });
        }
    }
    // Types deleted from a package that still exists.
    for om in old.messages.values() {
        if !new_pkgs.contains(om.package.as_str()) {
            continue;
        }
        let exists = new
            .messages
            .values()
            .any(|m| m.package == om.package && m.nested_name == om.nested_name);
        if !exists {
            package_deleted(
                out,
                "PACKAGE_MESSAGE_NO_DELETE",
                &om.file,
                &om.nested_name,
                &om.package,
                "message",
                om.full_name.clone(),
                Subject::Type(om.full_name.clone(), Side::Old),
            );
        }
    }
    for oe in old.enums.values() {
        if !new_pkgs.contains(oe.package.as_str()) {
            continue;
        }
        let exists = new
            .enums
            .values()
            .any(|e| e.package == oe.package && e.nested_name == oe.nested_name);
        if !exists {
            package_deleted(
                out,
                "PACKAGE_ENUM_NO_DELETE",
                &oe.file,
                &oe.nested_name,
                &oe.package,
                "enum",
                oe.full_name.clone(),
                Subject::Type(oe.full_name.clone(), Side::Old),
            );
        }
    }
    for ox in old.extensions.values() {
        let Some(of) = old.files.get(&ox.file) else {
            continue;
        };
        if !new_pkgs.contains(of.package.as_str()) {
            continue;
        }
        let exists = new.extensions.values().any(|x| x.full_name == ox.full_name);
        if !exists {
            let nested_name = nested(&ox.full_name, &of.package);
            package_deleted(
                out,
                "PACKAGE_EXTENSION_NO_DELETE",
                &ox.file,
                &nested_name,
                &of.package,
                "extension",
                ox.full_name.clone(),
                field_subject(ox, ""),
            );
        }
    }
    for os in old.services.values() {
        if !new_pkgs.contains(os.package.as_str()) {
            continue;
        }
        if !new.services.contains_key(&os.full_name) {
            let file = new
                .files
                .contains_key(&os.file)
                .then(|| (os.file.clone(), Side::New));
            out.raw(Raw {
                rule: "PACKAGE_SERVICE_NO_DELETE",
                file,
                span: None,
                element: os.full_name.clone(),
                message: format!(
                    "Previously present service {} was deleted from package {}.",
                    q(&os.name),
                    q(&os.package)
                ),
                subject: Subject::Service(os.full_name.clone(), Side::Old),
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn package_deleted(
    out: &mut Out<'_>,
    rule: &'static str,
    old_file: &str,
    nested_name: &str,
    package: &str,
    what: &str,
    element: String,
    subject: Subject,
) {
    let message = format!(
        "Previously present {what} {} was deleted from package {}.",
        q(nested_name),
        q(package)
    );
    if out.new.files.contains_key(old_file) {
        let new_msgs: BTreeMap<&str, &MessageInfo> = out
            .new
            .messages_in_file(old_file)
            .map(|m| (m.nested_name.as_str(), m))
            .collect();
        let parent = nearest_parent(&new_msgs, nested_name);
        deleted_in_file(out, rule, old_file, parent, element, message, subject);
    } else {
        // The file is gone too; buf names no file.
        out.raw(Raw {
            rule,
            file: None,
            span: None,
            element,
            message,
            subject,
        });
    }
}

fn message_pair(out: &mut Out<'_>, om: &MessageInfo, nm: &MessageInfo) {
    let subject = || Subject::Type(nm.full_name.clone(), Side::Both);
    let file = nm.file.clone();
    let mpath = nm.path.clone();
    for (number, of) in &om.fields {
        if nm.fields.contains_key(number) {
            continue;
        }
        let desc = lower_first(&describe(of));
        let number_reserved = nm
            .reserved_ranges
            .iter()
            .any(|(s, e)| s <= number && number <= e);
        let name_reserved = nm.reserved_names.contains(&of.name);
        let mut push = |rule: &'static str, suffix: String| {
            out.at_new(
                rule,
                &file,
                &[&mpath],
                field_element(of),
                format!("Previously present {desc} was deleted{suffix}."),
                subject(),
            );
        };
        push("FIELD_NO_DELETE", String::new());
        if !number_reserved {
            push(
                "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
                format!(
                    " without reserving the number {}",
                    q(&of.number.to_string())
                ),
            );
        }
        if !name_reserved {
            push(
                "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
                format!(" without reserving the name {}", q(&of.name)),
            );
        }
    }
    for name in &om.oneofs {
        if !nm.oneofs.contains(name) {
            out.at_new(
                "ONEOF_NO_DELETE",
                &file,
                &[&mpath],
                format!("{}.{}", nm.full_name, name),
                format!(
                    "Previously present oneof {} on message {} was deleted.",
                    q(name),
                    q(&nm.name)
                ),
                subject(),
            );
        }
    }
    let max = if nm.message_set_wire_format {
        MESSAGE_SET_MAX
    } else {
        MESSAGE_MAX
    };
    for (prev, removed) in missing_ranges(&om.extension_ranges, &nm.extension_ranges, max) {
        out.at_new(
            "EXTENSION_MESSAGE_NO_DELETE",
            &file,
            &[&mpath],
            nm.full_name.clone(),
            format!(
                "Previously present extension range {} on message {} is missing values: {} were removed.",
                q(&prev),
                q(&nm.name),
                removed
            ),
            subject(),
        );
    }
    for (prev, removed) in missing_ranges(&om.reserved_ranges, &nm.reserved_ranges, max) {
        out.at_new(
            "RESERVED_MESSAGE_NO_DELETE",
            &file,
            &[&mpath],
            nm.full_name.clone(),
            format!(
                "Previously present reserved range {} on message {} is missing values: {} were removed.",
                q(&prev),
                q(&nm.name),
                removed
            ),
            subject(),
        );
    }
    for name in &om.reserved_names {
        if !nm.reserved_names.contains(name) {
            out.at_new(
                "RESERVED_MESSAGE_NO_DELETE",
                &file,
                &[&mpath],
                nm.full_name.clone(),
                format!(
                    "Previously present reserved name {} on message {} was deleted.",
                    q(name),
                    q(&nm.name)
                ),
                subject(),
            );
        }
    }
    let required = |m: &MessageInfo| -> BTreeSet<i32> {
        m.fields
            .values()
            .filter(|f| f.card == Card::Required)
            .map(|f| f.number)
            .collect()
    };
    let (oreq, nreq) = (required(om), required(nm));
    for n in oreq.difference(&nreq) {
        out.at_new(
            "MESSAGE_SAME_REQUIRED_FIELDS",
            &file,
            &[&mpath],
            nm.full_name.clone(),
            format!(
                "Message {} had required field {} deleted. Required fields must always be sent, so if one side does not know about the required field, this will result in a breakage.",
                q(&om.name),
                q(&n.to_string())
            ),
            subject(),
        );
    }
    for n in nreq.difference(&oreq) {
        let fpath = nm.fields.get(n).map(|f| f.path.clone()).unwrap_or_default();
        out.at_new(
            "MESSAGE_SAME_REQUIRED_FIELDS",
            &file,
            &[&fpath],
            nm.full_name.clone(),
            format!(
                "Message {} had required field {} added. Required fields must always be sent, so if one side does not know about the required field, this will result in a breakage.",
                q(&nm.name),
                q(&n.to_string())
            ),
            subject(),
        );
    }
    if !om.no_standard_descriptor_accessor && nm.no_standard_descriptor_accessor {
        out.at_new(
            "MESSAGE_NO_REMOVE_STANDARD_DESCRIPTOR_ACCESSOR",
            &file,
            &[&with(&mpath, &[7, 2])],
            nm.full_name.clone(),
            "Message option \"no_standard_descriptor_accessor\" changed from \"false\" to \"true\"."
                .to_string(),
            subject(),
        );
    }
    if om.json_allow && !nm.json_allow {
        out.at_new(
            "MESSAGE_SAME_JSON_FORMAT",
            &file,
            &[&mpath],
            nm.full_name.clone(),
            format!(
                "Message {} JSON format support changed from ALLOW to LEGACY_BEST_EFFORT.",
                q(&nm.name)
            ),
            subject(),
        );
    }
}

const MESSAGE_MAX: i32 = 536_870_911;
const MESSAGE_SET_MAX: i32 = 2_147_483_646;
const ENUM_MAX: i32 = i32::MAX;

/// For each previous range not fully covered by the current ranges: the previous range and the
/// missing parts, both as `buf` prints them.
fn missing_ranges(prev: &[(i32, i32)], cur: &[(i32, i32)], max: i32) -> Vec<(String, String)> {
    let mut sorted: Vec<(i64, i64)> = cur
        .iter()
        .map(|&(s, e)| (i64::from(s), i64::from(e)))
        .collect();
    sorted.sort();
    let mut collapsed: Vec<(i64, i64)> = Vec::new();
    for (s, e) in sorted {
        match collapsed.last_mut() {
            Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
            _ => collapsed.push((s, e)),
        }
    }
    let show = |s: i64, e: i64| -> String {
        if s == e {
            format!("[{s}]")
        } else if e == i64::from(max) {
            format!("[{s},max]")
        } else {
            format!("[{s},{e}]")
        }
    };
    let mut result = Vec::new();
    for &(s, e) in prev {
        let (start, end) = (i64::from(s), i64::from(e));
        let mut missing = Vec::new();
        let mut cursor = start;
        for &(cs, ce) in &collapsed {
            if ce < cursor {
                continue;
            }
            if cs > end {
                break;
            }
            if cs > cursor {
                missing.push((cursor, cs - 1));
            }
            cursor = ce + 1;
            if cursor > end {
                break;
            }
        }
        if cursor <= end {
            missing.push((cursor, end));
        }
        if !missing.is_empty() {
            let removed = missing
                .iter()
                .map(|&(a, b)| show(a, b))
                .collect::<Vec<_>>()
                .join(", ");
            result.push((show(start, end), removed));
        }
    }
    result
}

/// Wire-compatibility groups (protobuf's "updating a message type" rules).
fn wire_group(k: FieldKind) -> u8 {
    use FieldKind::*;
    match k {
        Int32 | Int64 | Uint32 | Uint64 | Bool => 1,
        Sint32 | Sint64 => 2,
        String => 3,
        Bytes => 4,
        Fixed32 | Sfixed32 => 5,
        Fixed64 | Sfixed64 => 6,
        Double => 7,
        Float => 8,
        Group => 9,
        Message => 10,
        Enum => 11,
    }
}

/// Groups compatible on the wire and in JSON at once.
fn wire_json_group(k: FieldKind) -> u8 {
    use FieldKind::*;
    match k {
        Int32 | Uint32 => 1,
        Int64 | Uint64 => 2,
        Fixed32 | Sfixed32 => 3,
        Fixed64 | Sfixed64 => 4,
        Bool => 5,
        Sint32 => 6,
        Sint64 => 7,
        String => 8,
        Bytes => 9,
        Double => 10,
        Float => 11,
        Group => 12,
        Message => 13,
        Enum => 14,
    }
}

fn card_wire_group(c: Card) -> u8 {
    match c {
        Card::Explicit | Card::Implicit => 1,
        Card::Required => 2,
        Card::Repeated | Card::Map => 3,
    }
}

fn card_wire_json_group(c: Card) -> u8 {
    match c {
        Card::Explicit | Card::Implicit => 1,
        Card::Required => 2,
        Card::Repeated => 3,
        Card::Map => 4,
    }
}

const WIRE_DOC: &str = "See https://developers.google.com/protocol-buffers/docs/proto3#updating for wire compatibility rules.";
const WIRE_JSON_DOC: &str = "See https://developers.google.com/protocol-buffers/docs/proto3#updating for wire compatibility rules and https://developers.google.com/protocol-buffers/docs/proto3#json for JSON compatibility rules.";

fn cpp_string_type(ctype: Option<i32>) -> (&'static str, bool) {
    match ctype {
        Some(1) => ("CORD", false),
        Some(2) => ("STRING", true),
        _ => ("STRING", false),
    }
}

fn jstype_name(j: i32) -> &'static str {
    match j {
        1 => "JS_STRING",
        2 => "JS_NUMBER",
        _ => "JS_NORMAL",
    }
}

fn defaults_equal(a: &DefaultValue, b: &DefaultValue) -> bool {
    use DefaultValue::*;
    match (a, b) {
        (Text(x), Text(y)) => x == y,
        (Text(_), _) | (_, Text(_)) => false,
        (Float32(x), Float(y)) | (Float(y), Float32(x)) => {
            (x.is_nan() && y.is_nan()) || *x == *y as f32
        }
        (Float32(x), Float32(y)) => (x.is_nan() && y.is_nan()) || x == y,
        (Float(x), Float(y)) => (x.is_nan() && y.is_nan()) || x == y,
        (Int(x), Int(y)) => x == y,
        (Int(i), Float(f)) | (Float(f), Int(i)) => !f.is_nan() && (*i as f64) == *f,
        (Int(i), Float32(f)) | (Float32(f), Int(i)) => !f.is_nan() && (*i as f64) == f64::from(*f),
    }
}

fn field_pair(out: &mut Out<'_>, of: &FieldInfo, nf: &FieldInfo, msg_full: &str) {
    let fpath = nf.path.clone();
    let element = field_element(nf);
    let subject = || field_subject(nf, msg_full);
    let desc = describe(nf);

    // Cardinality, three ways.
    if !(of.in_map_entry && nf.in_map_entry) {
        let msg = format!(
            "{desc} changed cardinality from {} to {}.",
            q(of.card.as_str()),
            q(nf.card.as_str())
        );
        if of.card != nf.card {
            out.at_field(
                "FIELD_SAME_CARDINALITY",
                nf,
                &[&fpath],
                element.clone(),
                msg.clone(),
                subject(),
            );
        }
        if card_wire_group(of.card) != card_wire_group(nf.card) {
            out.at_field(
                "FIELD_WIRE_COMPATIBLE_CARDINALITY",
                nf,
                &[&fpath],
                element.clone(),
                msg.clone(),
                subject(),
            );
        }
        if card_wire_json_group(of.card) != card_wire_json_group(nf.card) {
            out.at_field(
                "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY",
                nf,
                &[&fpath],
                element.clone(),
                msg,
                subject(),
            );
        }
    }

    // C++ string type.
    let is_text = |k: FieldKind| matches!(k, FieldKind::String | FieldKind::Bytes);
    if !(of.in_map_entry && nf.in_map_entry) && is_text(of.kind) && is_text(nf.kind) {
        let (pt, pp) = cpp_string_type(of.ctype);
        let (ct, cp) = cpp_string_type(nf.ctype);
        if (pt != ct || pp != cp) && !(pp && ct == "STRING") {
            let show = |t: &'static str, piece: bool| if piece { "STRING_PIECE" } else { t };
            out.at_field(
                "FIELD_SAME_CPP_STRING_TYPE",
                nf,
                &[&with(&fpath, &[8, 1]), &fpath],
                element.clone(),
                format!(
                    "{desc} changed C++ string type from {} to {}.",
                    q(show(pt, pp)),
                    q(show(ct, cp))
                ),
                subject(),
            );
        }
    }

    if of.kind == FieldKind::String && nf.kind == FieldKind::String {
        let name = |v: bool| if v { "VERIFY" } else { "NONE" };
        if of.java_utf8_verify != nf.java_utf8_verify {
            out.at_field(
                "FIELD_SAME_JAVA_UTF8_VALIDATION",
                nf,
                &[&[8, 27], &fpath],
                element.clone(),
                format!(
                    "{desc} changed Java string UTF8 validation from {} to {}.",
                    q(name(of.java_utf8_verify)),
                    q(name(nf.java_utf8_verify))
                ),
                subject(),
            );
        }
        if of.utf8_verify != nf.utf8_verify {
            out.at_field(
                "FIELD_SAME_UTF8_VALIDATION",
                nf,
                &[&fpath],
                element.clone(),
                format!(
                    "{desc} changed UTF8 validation from {} to {}.",
                    name(of.utf8_verify),
                    name(nf.utf8_verify)
                ),
                subject(),
            );
        }
    }

    if of.kind.is_64bit_integer() && nf.kind.is_64bit_integer() && of.jstype != nf.jstype {
        out.at_field(
            "FIELD_SAME_JSTYPE",
            nf,
            &[&with(&fpath, &[8, 6]), &fpath],
            element.clone(),
            format!(
                "{desc} changed option \"jstype\" from {} to {}.",
                q(jstype_name(of.jstype)),
                q(jstype_name(nf.jstype))
            ),
            subject(),
        );
    }

    // Types.
    let type_path = |f: &FieldInfo, p: &[i32]| -> Vec<i32> {
        if f.kind.is_named() {
            with(p, &[6])
        } else {
            with(p, &[5])
        }
    };
    let changed_kind = |extra: &str| -> String {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" {extra}")
        };
        format!(
            "{desc} changed type from {} to {}.{extra}",
            q(of.kind.as_str()),
            q(nf.kind.as_str())
        )
    };
    let changed_name = format!(
        "{desc} changed type from {} to {}.",
        q(&of.type_name),
        q(&nf.type_name)
    );
    let kind_path = type_path(nf, &fpath);
    let name_path = with(&fpath, &[6]);
    if of.kind != nf.kind {
        out.at_field(
            "FIELD_SAME_TYPE",
            nf,
            &[&kind_path],
            element.clone(),
            changed_kind(""),
            subject(),
        );
    } else if nf.kind.is_named() && of.type_name != nf.type_name {
        out.at_field(
            "FIELD_SAME_TYPE",
            nf,
            &[&name_path],
            element.clone(),
            changed_name.clone(),
            subject(),
        );
    }

    if wire_group(of.kind) != wire_group(nf.kind) {
        let ok = of.kind == FieldKind::String && nf.kind == FieldKind::Bytes;
        if !ok {
            let extra = if of.kind == FieldKind::Bytes && nf.kind == FieldKind::String {
                format!(
                    "{WIRE_DOC} Note that while string and bytes are compatible if the data is valid UTF-8, there is no way to enforce that a bytes field is UTF-8, so these fields may be incompatible."
                )
            } else {
                WIRE_DOC.to_string()
            };
            out.at_field(
                "FIELD_WIRE_COMPATIBLE_TYPE",
                nf,
                &[&kind_path],
                element.clone(),
                changed_kind(&extra),
                subject(),
            );
        }
    } else if nf.kind.is_named()
        && of.type_name != nf.type_name
        && !enum_compatible(out.old, out.new, of, nf)
    {
        out.at_field(
            "FIELD_WIRE_COMPATIBLE_TYPE",
            nf,
            &[&name_path],
            element.clone(),
            changed_name.clone(),
            subject(),
        );
    }

    if wire_json_group(of.kind) != wire_json_group(nf.kind) {
        out.at_field(
            "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
            nf,
            &[&kind_path],
            element.clone(),
            changed_kind(WIRE_JSON_DOC),
            subject(),
        );
    } else if nf.kind.is_named()
        && of.type_name != nf.type_name
        && !enum_compatible(out.old, out.new, of, nf)
    {
        out.at_field(
            "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
            nf,
            &[&name_path],
            element.clone(),
            changed_name,
            subject(),
        );
    }

    if of.extendee.is_none() && of.json_name != nf.json_name {
        out.at_field(
            "FIELD_SAME_JSON_NAME",
            nf,
            &[&with(&fpath, &[10]), &fpath],
            element.clone(),
            format!(
                "{desc} changed option \"json_name\" from {} to {}.",
                q(&of.json_name),
                q(&nf.json_name)
            ),
            subject(),
        );
    }

    let (oname, nname) = if of.extendee.is_some() {
        (&of.full_name, &nf.full_name)
    } else {
        (&of.name, &nf.name)
    };
    if oname != nname {
        out.at_field(
            "FIELD_SAME_NAME",
            nf,
            &[&with(&fpath, &[1])],
            element.clone(),
            format!(
                "{} changed name from {} to {}.",
                describe_named(nf, None),
                q(oname),
                q(nname)
            ),
            subject(),
        );
    }

    if let (Some(od), Some(nd)) = (&of.default, &nf.default)
        && !(od.is_zero() && nd.is_zero())
        && !defaults_equal(od, nd)
    {
        out.at_field(
            "FIELD_SAME_DEFAULT",
            nf,
            &[&with(&fpath, &[7]), &fpath],
            element.clone(),
            format!(
                "{desc} changed default value from {} to {}.",
                of.default_printable, nf.default_printable
            ),
            subject(),
        );
    }

    if of.extendee.is_none() {
        let msg = match (&of.oneof, &nf.oneof) {
            (None, None) => None,
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!(
                "{desc} moved from oneof {} to oneof {}.",
                q(a),
                q(b)
            )),
            (Some(_), None) => Some(format!("{desc} moved from inside to outside a oneof.")),
            (None, Some(_)) => Some(format!("{desc} moved from outside to inside a oneof.")),
        };
        if let Some(msg) = msg {
            out.at_field("FIELD_SAME_ONEOF", nf, &[&fpath], element, msg, subject());
        }
    }
}

/// For a field whose enum type was renamed: compatible when the short names match and every
/// previous value (number and name) is still in the new enum.
fn enum_compatible(old: &Model, new: &Model, of: &FieldInfo, nf: &FieldInfo) -> bool {
    if of.kind != FieldKind::Enum || nf.kind != FieldKind::Enum {
        return false;
    }
    let (Some(oe), Some(ne)) = (old.enums.get(&of.type_name), new.enums.get(&nf.type_name)) else {
        return false;
    };
    if oe.name != ne.name {
        return false;
    }
    oe.values.iter().all(|(number, names)| {
        ne.values
            .get(number)
            .is_some_and(|nn| names.keys().all(|n| nn.contains_key(n)))
    })
}

fn enum_pair(out: &mut Out<'_>, oe: &EnumInfo, ne: &EnumInfo) {
    let subject = || Subject::Type(ne.full_name.clone(), Side::Both);
    let file = ne.file.clone();
    let epath = ne.path.clone();
    for (number, names) in &oe.values {
        if ne.values.contains_key(number) {
            continue;
        }
        let element = format!(
            "{}.{}",
            ne.full_name,
            names.keys().next().map(String::as_str).unwrap_or_default()
        );
        let base = format!(
            "Previously present enum value {} on enum {} was deleted",
            q(&number.to_string()),
            q(&ne.name)
        );
        out.at_new(
            "ENUM_VALUE_NO_DELETE",
            &file,
            &[&epath],
            element.clone(),
            format!("{base}."),
            subject(),
        );
        if !ne
            .reserved_ranges
            .iter()
            .any(|(s, e)| s <= number && number <= e)
        {
            out.at_new(
                "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
                &file,
                &[&epath],
                element.clone(),
                format!(
                    "{base} without reserving the number {}.",
                    q(&number.to_string())
                ),
                subject(),
            );
        }
        if !names.keys().all(|n| ne.reserved_names.contains(n)) {
            let s = if names.len() > 1 { "s" } else { "" };
            out.at_new(
                "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
                &file,
                &[&epath],
                element,
                format!(
                    "{base} without reserving the name{s} {}.",
                    join_quoted(names.keys())
                ),
                subject(),
            );
        }
    }
    for (number, onames) in &oe.values {
        let Some(nnames) = ne.values.get(number) else {
            continue;
        };
        // Every previous name must survive; aliases may be added.
        if onames.keys().all(|n| nnames.contains_key(n)) {
            continue;
        }
        let s = if onames.len() > 1 && nnames.len() > 1 {
            "s"
        } else {
            ""
        };
        for (name, value) in nnames {
            out.at_new(
                "ENUM_VALUE_SAME_NAME",
                &file,
                &[&with(&value.path, &[2])],
                format!("{}.{}", ne.full_name, name),
                format!(
                    "Enum value {} on enum {} changed name{s} from {} to {}.",
                    q(&number.to_string()),
                    q(&ne.name),
                    join_quoted(onames.keys()),
                    join_quoted(nnames.keys())
                ),
                subject(),
            );
        }
    }
    for (prev, removed) in missing_ranges(&oe.reserved_ranges, &ne.reserved_ranges, ENUM_MAX) {
        out.at_new(
            "RESERVED_ENUM_NO_DELETE",
            &file,
            &[&epath],
            ne.full_name.clone(),
            format!(
                "Previously present reserved range {} on enum {} is missing values: {} were removed.",
                q(&prev),
                q(&ne.name),
                removed
            ),
            subject(),
        );
    }
    for name in &oe.reserved_names {
        if !ne.reserved_names.contains(name) {
            out.at_new(
                "RESERVED_ENUM_NO_DELETE",
                &file,
                &[&epath],
                ne.full_name.clone(),
                format!(
                    "Previously present reserved name {} on enum {} was deleted.",
                    q(name),
                    q(&ne.name)
                ),
                subject(),
            );
        }
    }
    if oe.closed != ne.closed {
        let (p, c) = if ne.closed {
            ("open", "closed")
        } else {
            ("closed", "open")
        };
        out.at_new(
            "ENUM_SAME_TYPE",
            &file,
            &[&epath],
            ne.full_name.clone(),
            format!("Enum {} changed from {p} to {c}.", q(&ne.name)),
            subject(),
        );
    }
    if oe.json_allow && !ne.json_allow {
        out.at_new(
            "ENUM_SAME_JSON_FORMAT",
            &file,
            &[&epath],
            ne.full_name.clone(),
            format!(
                "Enum {} JSON format support changed from ALLOW to LEGACY_BEST_EFFORT.",
                q(&ne.name)
            ),
            subject(),
        );
    }
}

fn idempotency_name(v: i32) -> &'static str {
    match v {
        1 => "NO_SIDE_EFFECTS",
        2 => "IDEMPOTENT",
        _ => "IDEMPOTENCY_UNKNOWN",
    }
}

fn services(out: &mut Out<'_>) {
    let (old, new) = (out.old, out.new);
    for (name, os) in &old.services {
        let Some(ns) = new.services.get(name) else {
            continue;
        };
        let file = ns.file.clone();
        for (mname, om) in &os.methods {
            let op = format!("{}/{}", ns.full_name, mname);
            let element = format!("{}.{}", ns.full_name, mname);
            let Some(nm) = ns.methods.get(mname) else {
                out.at_new(
                    "RPC_NO_DELETE",
                    &file,
                    &[&ns.path],
                    element,
                    format!(
                        "Previously present RPC {} on service {} was deleted.",
                        q(mname),
                        q(&ns.name)
                    ),
                    Subject::Op(op, None),
                );
                continue;
            };
            let mpath = nm.path.clone();
            if om.input != nm.input {
                out.at_new(
                    "RPC_SAME_REQUEST_TYPE",
                    &file,
                    &[&with(&mpath, &[2])],
                    element.clone(),
                    format!(
                        "RPC {} on service {} changed request type from {} to {}.",
                        q(mname),
                        q(&ns.name),
                        q(&om.input),
                        q(&nm.input)
                    ),
                    Subject::Op(op.clone(), Some(Dir::Request)),
                );
            }
            if om.output != nm.output {
                out.at_new(
                    "RPC_SAME_RESPONSE_TYPE",
                    &file,
                    &[&with(&mpath, &[3])],
                    element.clone(),
                    format!(
                        "RPC {} on service {} changed response type from {} to {}.",
                        q(mname),
                        q(&ns.name),
                        q(&om.output),
                        q(&nm.output)
                    ),
                    Subject::Op(op.clone(), Some(Dir::Response)),
                );
            }
            let stream = |b: bool| if b { "streaming" } else { "unary" };
            if om.client_streaming != nm.client_streaming {
                out.at_new(
                    "RPC_SAME_CLIENT_STREAMING",
                    &file,
                    &[&mpath],
                    element.clone(),
                    format!(
                        "RPC {} on service {} changed from client {} to client {}.",
                        q(mname),
                        q(&ns.name),
                        stream(om.client_streaming),
                        stream(nm.client_streaming)
                    ),
                    Subject::Op(op.clone(), Some(Dir::Request)),
                );
            }
            if om.server_streaming != nm.server_streaming {
                out.at_new(
                    "RPC_SAME_SERVER_STREAMING",
                    &file,
                    &[&mpath],
                    element.clone(),
                    format!(
                        "RPC {} on service {} changed from server {} to server {}.",
                        q(mname),
                        q(&ns.name),
                        stream(om.server_streaming),
                        stream(nm.server_streaming)
                    ),
                    Subject::Op(op.clone(), Some(Dir::Response)),
                );
            }
            if om.idempotency != nm.idempotency {
                out.at_new(
                    "RPC_SAME_IDEMPOTENCY_LEVEL",
                    &file,
                    &[&with(&mpath, &[4, 34])],
                    element.clone(),
                    format!(
                        "RPC {} on service {} changed option \"idempotency_level\" from {} to {}.",
                        q(mname),
                        q(&ns.name),
                        q(idempotency_name(om.idempotency)),
                        q(idempotency_name(nm.idempotency))
                    ),
                    Subject::Op(op, None),
                );
            }
        }
    }
}

/// Additions `buf` does not report: new messages, enums, services, fields, enum values, RPCs
/// and extensions, each located at the new element.
pub(crate) fn additions(old: &Model, new: &Model) -> Vec<Raw> {
    let mut out = Out {
        old,
        new,
        found: Vec::new(),
    };
    for (name, nm) in &new.messages {
        if nm.is_map_entry {
            continue;
        }
        match old.messages.get(name) {
            None => out.at_new(
                "MESSAGE_ADDED",
                &nm.file,
                &[&nm.path],
                name.clone(),
                format!("Message {} was added.", q(name)),
                Subject::Type(name.clone(), Side::New),
            ),
            Some(om) => {
                for (number, nf) in &nm.fields {
                    if !om.fields.contains_key(number) {
                        out.at_new(
                            "FIELD_ADDED",
                            &nf.file,
                            &[&nf.path],
                            nf.full_name.clone(),
                            format!("{} was added.", describe(nf)),
                            Subject::Type(name.clone(), Side::New),
                        );
                    }
                }
            }
        }
    }
    for (name, ne) in &new.enums {
        match old.enums.get(name) {
            None => out.at_new(
                "ENUM_ADDED",
                &ne.file,
                &[&ne.path],
                name.clone(),
                format!("Enum {} was added.", q(name)),
                Subject::Type(name.clone(), Side::New),
            ),
            Some(oe) => {
                for (number, names) in &ne.values {
                    if oe.values.contains_key(number) {
                        continue;
                    }
                    for (vname, v) in names {
                        out.at_new(
                            "ENUM_VALUE_ADDED",
                            &ne.file,
                            &[&v.path],
                            format!("{name}.{vname}"),
                            format!(
                                "Enum value {} with name {} was added to enum {}.",
                                q(&number.to_string()),
                                q(vname),
                                q(&ne.name)
                            ),
                            Subject::Type(name.clone(), Side::New),
                        );
                    }
                }
            }
        }
    }
    for (name, ns) in &new.services {
        match old.services.get(name) {
            None => out.at_new(
                "SERVICE_ADDED",
                &ns.file,
                &[&ns.path],
                name.clone(),
                format!("Service {} was added.", q(name)),
                Subject::Service(name.clone(), Side::New),
            ),
            Some(os) => {
                for (mname, nm) in &ns.methods {
                    if !os.methods.contains_key(mname) {
                        out.at_new(
                            "RPC_ADDED",
                            &ns.file,
                            &[&nm.path],
                            format!("{name}.{mname}"),
                            format!("RPC {} was added to service {}.", q(mname), q(&ns.name)),
                            Subject::Op(format!("{name}/{mname}"), None),
                        );
                    }
                }
            }
        }
    }
    for (key, nx) in &new.extensions {
        if !old.extensions.contains_key(key) {
            out.at_new(
                "EXTENSION_ADDED",
                &nx.file,
                &[&nx.path],
                nx.full_name.clone(),
                format!("{} was added.", describe(nx)),
                field_subject(nx, ""),
            );
        }
    }
    out.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ranges_like_buf() {
        assert_eq!(
            missing_ranges(&[(2, 2)], &[], MESSAGE_MAX),
            vec![("[2]".to_string(), "[2]".to_string())]
        );
        assert_eq!(
            missing_ranges(&[(1, 10)], &[(1, 3), (4, 5), (8, 8)], MESSAGE_MAX),
            vec![("[1,10]".to_string(), "[6,7], [9,10]".to_string())]
        );
        assert_eq!(
            missing_ranges(&[(5, MESSAGE_MAX)], &[(5, 100)], MESSAGE_MAX),
            vec![("[5,max]".to_string(), "[101,max]".to_string())]
        );
        assert!(missing_ranges(&[(2, 4)], &[(1, 9)], MESSAGE_MAX).is_empty());
    }

    #[test]
    fn categories_are_buf_s() {
        assert!(rule_in_category("FIELD_NO_DELETE", Category::File));
        assert!(!rule_in_category("FIELD_NO_DELETE", Category::WireJson));
        assert!(rule_in_category(
            "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
            Category::WireJson
        ));
        assert!(!rule_in_category(
            "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
            Category::File
        ));
        assert!(rule_in_category(
            "FIELD_WIRE_COMPATIBLE_TYPE",
            Category::Wire
        ));
        assert!(rule_in_category("PACKAGE_NO_DELETE", Category::Package));
        assert!(!rule_in_category("PACKAGE_NO_DELETE", Category::File));
        assert_eq!(RULES.len(), 64);
    }
}
