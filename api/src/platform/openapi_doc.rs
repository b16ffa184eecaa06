//! The OpenAPI document as served at `/openapi.json`: poem-openapi's, with the shapes that
//! client generators reject rewritten, computed once at start-up.
//!
//! poem-openapi documents a field whose type is a named schema and that has its own doc
//! comment as `{description, allOf: [{$ref}, {description}]}`. That is valid OpenAPI, but
//! openapi-python-client cannot take `allOf` of an enum and drops every schema that contains
//! one (a generated Python client could not read a login response). The rewrite keeps the
//! reference and the field's description: `{$ref, description}`.
//!
//! poem-openapi also leaves an `Option` field out of `required` but writes `None` as `null`,
//! while its schema says only `type: string`: a validating client (or schemathesis) then
//! refuses `"last_login_at": null`. Every optional property that is not a reference is marked
//! `nullable: true`, which is what the server sends and accepts (serde reads `null` as `None`).
//!
//! Creates carry OpenAPI `links` to the operations on what they created ([`LINKS`]), so
//! clients and fuzzers can follow a create with reads, changes and deletes of that resource.
//!
//! Currency fields carry the general currency-code pattern in the code; when the configured
//! price provider quotes in a fixed list of currencies, the served document narrows each of
//! them to that list, so that a schema-valid currency is one this deployment can price.

use serde_json::{Map, Value};

use crate::market::CURRENCY_PATTERN;
use crate::platform::pattern_words::NO_NUL_PATTERN;

/// The served document for poem-openapi's `spec` (JSON text), with currency fields limited
/// to `currencies` when the provider has a fixed list.
pub fn document(spec: &str, currencies: Option<&[&str]>) -> Result<String, serde_json::Error> {
    let mut document: Value = serde_json::from_str(spec)?;
    normalize(&mut document);
    nullable_object_references(&mut document);
    close_request_bodies(&mut document);
    if let Some(currencies) = currencies {
        narrow_currencies(&mut document, &any_case_alternatives(currencies));
    }
    add_links(&mut document);
    serde_json::to_string(&document)
}

/// A create and the operations on what it created.
struct Link {
    /// The creating operation's path, method and success status.
    path: &'static str,
    method: &'static str,
    status: &'static str,
    /// The operations on the created resource (path, method).
    targets: &'static [(&'static str, &'static str)],
    /// How their path parameters are filled (name, runtime expression).
    parameters: &'static [(&'static str, &'static str)],
}

/// What a created resource leads to. OpenAPI `links` say it to clients and let
/// schemathesis's stateful phase follow a create with reads, changes and deletes of the very
/// resource it created.
const LINKS: &[Link] = &[
    Link {
        path: "/api/v1/portfolios",
        method: "post",
        status: "201",
        targets: &[
            ("/api/v1/portfolios/{id}", "get"),
            ("/api/v1/portfolios/{id}", "patch"),
            ("/api/v1/portfolios/{id}", "delete"),
            ("/api/v1/portfolios/{id}/valuation", "get"),
            ("/api/v1/portfolios/{id}/transactions", "get"),
            ("/api/v1/portfolios/{id}/transactions", "post"),
        ],
        parameters: &[("id", "$response.body#/id")],
    },
    Link {
        path: "/api/v1/portfolios/{id}/transactions",
        method: "post",
        status: "201",
        targets: &[
            ("/api/v1/portfolios/{id}/transactions/{tx_id}", "get"),
            ("/api/v1/portfolios/{id}/transactions/{tx_id}", "delete"),
        ],
        parameters: &[("id", "$request.path.id"), ("tx_id", "$response.body#/id")],
    },
    Link {
        path: "/api/v1/crypto/bulk",
        method: "post",
        status: "202",
        targets: &[
            ("/api/v1/jobs/{id}", "get"),
            ("/api/v1/jobs/{id}", "delete"),
        ],
        parameters: &[("id", "$response.body#/id")],
    },
];

/// Adds [`LINKS`] to the responses they start from, each by `operationRef` (the document has
/// no operation ids, and adding them would rename every generated client function).
fn add_links(document: &mut Value) {
    for link in LINKS {
        let mut links = Map::new();
        for (target_path, target_method) in link.targets {
            if document["paths"][target_path][target_method].is_null() {
                continue;
            }
            let escaped = target_path.replace('~', "~0").replace('/', "~1");
            let name = format!(
                "{}{}",
                target_method.to_ascii_uppercase(),
                target_path
                    .trim_start_matches("/api/v1/")
                    .split('/')
                    .map(|segment| segment.trim_matches(|c| c == '{' || c == '}'))
                    .map(|segment| {
                        let mut chars = segment.chars();
                        chars.next().map_or_else(String::new, |first| {
                            first.to_ascii_uppercase().to_string() + chars.as_str()
                        })
                    })
                    .collect::<String>()
            );
            let parameters: Map<String, Value> = link
                .parameters
                .iter()
                .filter(|(name, _)| target_path.contains(&format!("{{{name}}}")))
                .map(|(name, expression)| ((*name).to_owned(), Value::from(*expression)))
                .collect();
            links.insert(
                name,
                serde_json::json!({
                    "operationRef": format!("#/paths/{escaped}/{target_method}"),
                    "parameters": parameters,
                }),
            );
        }
        let response = document
            .get_mut("paths")
            .and_then(|paths| paths.get_mut(link.path))
            .and_then(|item| item.get_mut(link.method))
            .and_then(|operation| operation.get_mut("responses"))
            .and_then(|responses| responses.get_mut(link.status))
            .and_then(Value::as_object_mut);
        if let Some(response) = response {
            response.insert("links".into(), Value::Object(links));
        }
    }
}

/// A pattern matching exactly `words`, each letter in either case (`usd` → `[Uu][Ss][Dd]`):
/// the server lower-cases currency codes, and JSON Schema patterns have no case-insensitive
/// flag that every dialect understands.
fn any_case_alternatives(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| {
                    let (lower, upper) = (c.to_ascii_lowercase(), c.to_ascii_uppercase());
                    if lower == upper {
                        c.to_string()
                    } else {
                        format!("[{upper}{lower}]")
                    }
                })
                .collect()
        })
        .collect();
    format!("^({})$", alternatives.join("|"))
}

/// Replaces every general currency pattern with `pattern`.
fn narrow_currencies(value: &mut Value, pattern: &str) {
    match value {
        Value::Object(object) => {
            if object.get("pattern").and_then(Value::as_str) == Some(CURRENCY_PATTERN) {
                object.insert("pattern".into(), Value::String(pattern.to_owned()));
            }
            object
                .values_mut()
                .for_each(|child| narrow_currencies(child, pattern));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|child| narrow_currencies(child, pattern)),
        _ => {}
    }
}

/// An optional property whose schema is a reference cannot carry `nullable` in OpenAPI 3.0,
/// yet the server writes `None` as `null`. For references to object schemas (a job's
/// `result`) the property becomes `{allOf: [{$ref}], nullable: true}`, which generators read
/// as "that object, or null". References to enums stay plain (openapi-python-client drops
/// `allOf` of an enum); the server never writes `null` for those in responses and refuses it
/// in requests (`json_body::non_null`).
fn nullable_object_references(document: &mut Value) {
    let Some(schemas) = document["components"]["schemas"].as_object() else {
        return;
    };
    let enums: std::collections::HashSet<String> = schemas
        .iter()
        .filter(|(_, schema)| schema.get("enum").is_some())
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect();
    let is_object = |reference: &str| {
        reference.starts_with("#/components/schemas/") && !enums.contains(reference)
    };
    let Some(components) = document["components"]["schemas"].as_object_mut() else {
        return;
    };
    for schema in components.values_mut() {
        let required: Vec<Value> = schema
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            if required.contains(&Value::String(name.clone())) {
                continue;
            }
            let Some(reference) = property.get("$ref").and_then(Value::as_str) else {
                continue;
            };
            if !is_object(reference) {
                continue;
            }
            let mut wrapped = Map::new();
            if let Some(description) = property.get("description") {
                wrapped.insert("description".into(), description.clone());
            }
            wrapped.insert(
                "allOf".into(),
                Value::Array(vec![serde_json::json!({ "$ref": reference })]),
            );
            wrapped.insert("nullable".into(), Value::Bool(true));
            *property = Value::Object(wrapped);
        }
    }
}

/// Every request body type refuses unknown fields (`JsonBody` parses with serde's
/// `deny_unknown_fields`, 422 naming the field), but poem-openapi does not say so in the schema;
/// `additionalProperties: false` on each body schema does, so generated clients and fuzzers
/// know an extra field is an error.
fn close_request_bodies(document: &mut Value) {
    let mut bodies: Vec<String> = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for operation in paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|item| item.values())
        {
            if let Some(content) = operation["requestBody"]["content"].as_object() {
                bodies.extend(
                    content
                        .values()
                        .filter_map(|media| media["schema"]["$ref"].as_str())
                        .filter_map(|reference| reference.strip_prefix("#/components/schemas/"))
                        .map(str::to_owned),
                );
            }
        }
    }
    for name in bodies {
        if let Some(schema) = document["components"]["schemas"][&name].as_object_mut() {
            schema.insert("additionalProperties".into(), Value::Bool(false));
            if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                properties.values_mut().for_each(refuse_nul);
            }
        }
    }
}

/// `JsonBody` refuses U+0000 in every string of every body (Postgres text cannot hold it); a
/// free-text string property (no pattern, no format) says so with a pattern. Properties with a
/// pattern exclude it in their own pattern.
fn refuse_nul(property: &mut Value) {
    if let Some(items) = property.get_mut("items") {
        refuse_nul(items);
    }
    if let Some(schema) = property.as_object_mut()
        && schema.get("type").and_then(Value::as_str) == Some("string")
        && !schema.contains_key("pattern")
        && !schema.contains_key("format")
        && !schema.contains_key("enum")
    {
        schema.insert("pattern".into(), Value::String(NO_NUL_PATTERN.into()));
    }
}

fn normalize(value: &mut Value) {
    match value {
        // Children first, so a property is already a plain reference (which takes no
        // `nullable`) when its object is looked at.
        Value::Object(object) => {
            object.values_mut().for_each(normalize);
            if let Some(plain) = described_reference(object) {
                *object = plain;
            }
            mark_optional_nullable(object);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// In an object schema, marks each property outside `required` (and not a `$ref`, which may not
/// carry siblings in OpenAPI 3.0) as `nullable`.
fn mark_optional_nullable(object: &mut Map<String, Value>) {
    let required: Vec<String> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, property) in properties.iter_mut() {
        if required.contains(name) {
            continue;
        }
        if let Some(property) = property.as_object_mut()
            && !property.contains_key("$ref")
        {
            property.insert("nullable".into(), Value::Bool(true));
        }
    }
}

/// `{description, allOf: [{$ref}, {description}]}` as `{$ref, description}`; `None` for any
/// other shape.
fn described_reference(object: &Map<String, Value>) -> Option<Map<String, Value>> {
    let all_of = object.get("allOf")?.as_array()?;
    let only_description_besides = object
        .keys()
        .all(|key| key == "allOf" || key == "description");
    let [reference, extra] = all_of.as_slice() else {
        return None;
    };
    let reference = reference.as_object()?;
    let target = reference.get("$ref")?;
    let extra_is_description = extra
        .as_object()
        .is_some_and(|extra| extra.keys().all(|key| key == "description"));
    if !only_description_besides || reference.len() != 1 || !extra_is_description {
        return None;
    }
    let mut plain = Map::new();
    plain.insert("$ref".into(), target.clone());
    if let Some(description) = object.get("description") {
        plain.insert("description".into(), description.clone());
    }
    Some(plain)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn request_body_schemas_refuse_unknown_fields() {
        let spec = json!({
            "paths": {"/login": {"post": {"requestBody": {"content": {"application/json":
                {"schema": {"$ref": "#/components/schemas/Login"}}}}}}},
            "components": {"schemas": {
                "Login": {"type": "object", "properties": {
                    "email": {"type": "string", "pattern": "^x$"},
                    "password": {"type": "string"},
                }},
                "Token": {"type": "object", "properties": {}},
            }},
        });
        let served: Value =
            serde_json::from_str(&document(&spec.to_string(), None).expect("a document"))
                .expect("json");
        assert_eq!(
            served["components"]["schemas"]["Login"]["additionalProperties"],
            false
        );
        assert_eq!(
            served["components"]["schemas"]["Login"]["properties"]["password"]["pattern"],
            NO_NUL_PATTERN
        );
        assert_eq!(
            served["components"]["schemas"]["Login"]["properties"]["email"]["pattern"], "^x$",
            "a field's own pattern stays"
        );
        assert_eq!(
            served["components"]["schemas"]["Token"].get("additionalProperties"),
            None,
            "response schemas stay open, so new fields never break old clients"
        );
    }

    #[test]
    fn currency_patterns_narrow_to_the_providers_list() {
        let pattern = any_case_alternatives(&["usd", "eur"]);
        assert_eq!(pattern, "^([Uu][Ss][Dd]|[Ee][Uu][Rr])$");
        let regex = regex::Regex::new(&pattern).expect("a valid pattern");
        for accepted in ["usd", "USD", "uSd", "eur"] {
            assert!(regex.is_match(accepted), "{accepted}");
        }
        for refused in ["gbp", "usdx", "xusd", ""] {
            assert!(!regex.is_match(refused), "{refused}");
        }
        let mut spec = json!({"parameters": [{"name": "vs_currency",
            "schema": {"type": "string", "pattern": CURRENCY_PATTERN}}],
            "other": {"type": "string", "pattern": "^[a-z]$"}});
        narrow_currencies(&mut spec, &pattern);
        assert_eq!(spec["parameters"][0]["schema"]["pattern"], pattern.as_str());
        assert_eq!(spec["other"]["pattern"], "^[a-z]$");
    }

    #[test]
    fn optional_object_references_are_nullable_enum_references_stay_plain() {
        let mut spec = json!({"components": {"schemas": {
            "Job": {"type": "object", "required": ["kind"], "properties": {
                "kind": {"$ref": "#/components/schemas/Kind"},
                "status": {"$ref": "#/components/schemas/Kind"},
                "result": {"$ref": "#/components/schemas/Result", "description": "Outcome."},
            }},
            "Kind": {"type": "string", "enum": ["a"]},
            "Result": {"type": "object", "oneOf": []},
        }}});
        nullable_object_references(&mut spec);
        let properties = &spec["components"]["schemas"]["Job"]["properties"];
        assert_eq!(
            properties["kind"],
            json!({"$ref": "#/components/schemas/Kind"})
        );
        assert_eq!(
            properties["status"],
            json!({"$ref": "#/components/schemas/Kind"})
        );
        assert_eq!(
            properties["result"],
            json!({"description": "Outcome.", "nullable": true,
                   "allOf": [{"$ref": "#/components/schemas/Result"}]})
        );
    }

    #[test]
    fn created_resources_link_to_the_operations_on_them() {
        let mut spec = json!({"paths": {
            "/api/v1/crypto/bulk": {"post": {"responses": {"202": {"description": "Accepted"}}}},
            "/api/v1/jobs/{id}": {"get": {}, "delete": {}},
        }});
        add_links(&mut spec);
        let links = &spec["paths"]["/api/v1/crypto/bulk"]["post"]["responses"]["202"]["links"];
        assert_eq!(
            links["GETJobsId"],
            json!({"operationRef": "#/paths/~1api~1v1~1jobs~1{id}/get",
                   "parameters": {"id": "$response.body#/id"}})
        );
        assert!(links["DELETEJobsId"].is_object());
        assert_eq!(
            spec["paths"].get("/api/v1/portfolios"),
            None,
            "links from an operation the document lacks are skipped"
        );
    }

    #[test]
    fn optional_properties_are_nullable() {
        let mut spec = json!({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string"},
            "last_login_at": {"type": "string", "format": "date-time"},
            "role": {"$ref": "#/components/schemas/RoleName"},
            "described": {"description": "New role.",
                          "allOf": [{"$ref": "#/components/schemas/RoleName"},
                                    {"description": "New role."}]},
        }});
        normalize(&mut spec);
        assert_eq!(spec["properties"]["id"].get("nullable"), None);
        assert_eq!(spec["properties"]["last_login_at"]["nullable"], true);
        assert_eq!(spec["properties"]["role"].get("nullable"), None);
        assert_eq!(
            spec["properties"]["described"],
            json!({"$ref": "#/components/schemas/RoleName", "description": "New role."})
        );
    }

    #[test]
    fn described_references_become_plain_references() {
        let mut spec = json!({"required": ["role", "kept"], "properties": {
            "role": {"description": "What the user may do.",
                     "allOf": [{"$ref": "#/components/schemas/RoleName"},
                               {"description": "What the user may do."}]},
            "kept": {"allOf": [{"$ref": "#/a"}, {"$ref": "#/b"}]},
        }});
        normalize(&mut spec);
        assert_eq!(
            spec["properties"]["role"],
            json!({"$ref": "#/components/schemas/RoleName", "description": "What the user may do."})
        );
        assert_eq!(
            spec["properties"]["kept"],
            json!({"allOf": [{"$ref": "#/a"}, {"$ref": "#/b"}]}),
            "other compositions are left alone"
        );
    }
}
