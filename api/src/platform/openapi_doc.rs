//! The OpenAPI document as served at `/openapi.json`: poem-openapi's, with the shapes that
//! client generators reject rewritten, computed once at start-up.
//!
//! poem-openapi documents a field whose type is a named schema and that has its own doc
//! comment as `{description, allOf: [{$ref}, {description}]}`. That is valid OpenAPI, but
//! openapi-python-client cannot take `allOf` of an enum and drops every schema that contains
//! one (a generated Python client could not read a login response). The rewrite keeps the
//! reference and the field's description: `{$ref, description}`. Tests generate the Python and
//! TypeScript clients from the served document and hold them to zero warnings.

use serde_json::{Map, Value};

/// The served document for poem-openapi's `spec` (JSON text).
pub fn document(spec: &str) -> Result<String, serde_json::Error> {
    let mut document: Value = serde_json::from_str(spec)?;
    normalize(&mut document);
    serde_json::to_string(&document)
}

fn normalize(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(plain) = described_reference(object) {
                *object = plain;
            }
            object.values_mut().for_each(normalize);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
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
    fn described_references_become_plain_references() {
        let mut spec = json!({"properties": {
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
