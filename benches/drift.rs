//! Drift validation benchmark: how fast the drift writer validates observed responses against
//! their spec, in MB/s and responses/s, on bodies of about 1 KB, 100 KB and 5 MB.
//!
//! Run: `cargo bench --bench drift` (release build, in process: the work of the writer's
//! blocking task, nothing on a response path). The bodies are arrays of a realistic object
//! (nested objects, enums, formats, nullable fields, a `oneOf` with a discriminator) valid
//! under the spec, so every keyword runs and nothing short-circuits. The baseline, measured in
//! the same run on the same bodies, is `serde_json::from_slice` alone: the cost of reading the
//! body at all.

use std::time::{Duration, Instant};

use mockops::drift::contracts::Contract;
use mockops::drift::validate::validate;
use mockops::drift::{
    Observation, ObservationSource, ObservedBody, ObservedRequest, ObservedResponse, Outcome,
};
use mockops::git::revision::{ReadError, RevisionFiles};
use serde_json::{Value, json};

const SPEC: &str = r##"openapi: 3.0.3
info: {title: orders, version: "1"}
paths:
  /orders:
    get:
      operationId: listOrders
      responses:
        "200":
          description: orders
          content:
            application/json:
              schema:
                type: array
                items: {$ref: "#/components/schemas/Order"}
components:
  schemas:
    Order:
      type: object
      required: [id, status, created, customer, lines, total]
      properties:
        id: {type: string, format: uuid}
        status: {type: string, enum: [pending, paid, shipped, cancelled]}
        created: {type: string, format: date-time}
        note: {type: string, nullable: true}
        total: {type: number, minimum: 0}
        customer:
          type: object
          required: [id, name]
          properties:
            id: {type: integer}
            name: {type: string, maxLength: 200}
            tier: {type: string, enum: [free, pro, enterprise]}
        payment:
          oneOf: [{$ref: "#/components/schemas/Card"}, {$ref: "#/components/schemas/Transfer"}]
          discriminator: {propertyName: method}
        lines:
          type: array
          items:
            type: object
            additionalProperties: false
            required: [sku, quantity, price]
            properties:
              sku: {type: string, pattern: "^[A-Z]{3}-[0-9]{4}$"}
              quantity: {type: integer, minimum: 1}
              price: {type: number}
    Card:
      type: object
      required: [method, last4]
      properties: {method: {type: string, enum: [card]}, last4: {type: string}}
    Transfer:
      type: object
      required: [method, iban_country]
      properties: {method: {type: string, enum: [transfer]}, iban_country: {type: string}}
"##;

struct NoFiles;
impl RevisionFiles for NoFiles {
    fn read(&self, _: &str) -> Result<Vec<u8>, ReadError> {
        Err(ReadError::NotFound)
    }
}

fn order(i: usize) -> Value {
    let status = ["pending", "paid", "shipped", "cancelled"][i % 4];
    json!({
        "id": format!("8c0e6f6a-1d2b-4c3d-9e8f-{:012x}", i),
        "status": status,
        "created": "2026-12-01T10:20:30Z",
        "note": if i.is_multiple_of(3) { Value::Null } else { json!("leave at the door") },
        "total": 12.5 + i as f64,
        "customer": {"id": i, "name": "Ada Lovelace", "tier": "pro"},
        "payment": if i.is_multiple_of(2) { json!({"method": "card", "last4": "4242"}) }
                   else { json!({"method": "transfer", "iban_country": "DE"}) },
        "lines": [
            {"sku": "ABC-1234", "quantity": 2, "price": 3.5},
            {"sku": "XYZ-0001", "quantity": 1, "price": 5}
        ]
    })
}

/// An array of orders of about `target` bytes.
fn body(target: usize) -> Vec<u8> {
    let one = serde_json::to_vec(&order(0)).expect("json").len();
    let n = (target / one).max(1);
    serde_json::to_vec(&Value::Array((0..n).map(order).collect())).expect("json")
}

fn observation(body: &[u8]) -> Observation {
    Observation {
        service: "orders".into(),
        federation: None,
        source: ObservationSource::Probe,
        at_ms: 0,
        request: ObservedRequest {
            method: "GET".into(),
            path: "/orders".into(),
            query: None,
            headers: Vec::new(),
            body: ObservedBody::None,
        },
        outcome: Outcome::Answered(ObservedResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: ObservedBody::Bytes(body.to_vec().into()),
        }),
    }
}

/// Runs `f` repeatedly for at least `budget`, at least `min` times; seconds per run.
fn time(budget: Duration, min: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut n = 0usize;
    while n < min || start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn main() {
    let spec = mockops::schema_diff::openapi::load("orders.yaml", SPEC.as_bytes(), &NoFiles)
        .expect("spec loads");
    let contract = Contract::from_spec("orders", spec).expect("compiles");
    println!(
        "{:<10} {:>10} {:>12} {:>14} {:>16} {:>10}",
        "body", "bytes", "validate", "responses/s", "parse only", "vs parse"
    );
    for (label, target) in [("~1 KB", 1_000), ("~100 KB", 100_000), ("~5 MB", 5_000_000)] {
        let bytes = body(target);
        let o = observation(&bytes);
        let check = validate(&contract, &o);
        assert!(check.findings.is_empty(), "{:?}", check.findings.first());
        assert!(check.skipped.is_empty(), "{:?}", check.skipped);
        let budget = Duration::from_secs(2);
        let validate_s = time(budget, 5, || {
            std::hint::black_box(validate(&contract, std::hint::black_box(&o)));
        });
        let parse_s = time(budget, 5, || {
            let v: Value = serde_json::from_slice(std::hint::black_box(&bytes)).expect("json");
            std::hint::black_box(v);
        });
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "{:<10} {:>10} {:>9.1} MB/s {:>14.0} {:>11.1} MB/s {:>9.2}x",
            label,
            bytes.len(),
            mb / validate_s,
            1.0 / validate_s,
            mb / parse_s,
            validate_s / parse_s,
        );
    }
}
