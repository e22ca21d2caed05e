//! `proto/schemas/*.schema.json` (run, checkpoint, event) are the OpenAPI document's component
//! schemas, made self-contained; this test fails when either drifts from the other.
//! Regenerate with `LEASEHOLD_BLESS=1 cargo test -p leasehold-coordinator --test integration schemas::`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use serde_json::{Value, json};

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if k == "$ref" {
                    if let Some(name) = val
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    {
                        out.push(name.to_owned());
                    }
                } else {
                    refs(val, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

fn rewrite(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "$ref" {
                    if let Some(r) = val.as_str() {
                        *val = json!(r.replace("#/components/schemas/", "#/$defs/"));
                    }
                } else {
                    rewrite(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

/// The component `name` with every schema it references under `$defs`.
fn standalone(openapi: &Value, file: &str, name: &str) -> Value {
    let components = &openapi["components"]["schemas"];
    let mut defs = BTreeMap::new();
    let mut todo = Vec::new();
    refs(&components[name], &mut todo);
    while let Some(next) = todo.pop() {
        if next == name || defs.contains_key(&next) {
            continue;
        }
        let schema = components[&next].clone();
        refs(&schema, &mut todo);
        defs.insert(next, schema);
    }
    let mut root = components[name].clone();
    let obj = root.as_object_mut().unwrap();
    obj.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    obj.insert(
        "$id".into(),
        json!(format!("https://leasehold.dev/schemas/{file}.schema.json")),
    );
    obj.insert("title".into(), json!(name));
    if !defs.is_empty() {
        obj.insert("$defs".into(), serde_json::to_value(defs).unwrap());
    }
    rewrite(&mut root);
    root
}

#[test]
fn json_schemas_match_the_openapi_document() {
    let openapi: Value =
        serde_json::from_str(&leasehold_coordinator::http::openapi::openapi_json()).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/schemas");
    for (file, component) in [
        ("run", "Run"),
        ("checkpoint", "CheckpointInput"),
        ("event", "Event"),
    ] {
        let expected = standalone(&openapi, file, component);
        let mut text = serde_json::to_string_pretty(&expected).unwrap();
        text.push('\n');
        let path = dir.join(format!("{file}.schema.json"));
        if std::env::var("LEASEHOLD_BLESS").as_deref() == Ok("1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale: LEASEHOLD_BLESS=1 cargo test -p leasehold-coordinator --test integration schemas::",
            path.display()
        );
        // Every property the schema requires is one the component declares.
        let schema: Value = serde_json::from_str(&committed).unwrap();
        for req in schema["required"].as_array().unwrap() {
            assert!(
                schema["properties"][req.as_str().unwrap()].is_object(),
                "{file}: {req}"
            );
        }
    }
}
