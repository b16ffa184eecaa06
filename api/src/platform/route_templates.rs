//! Maps poem-openapi's internal route patterns back to the documented templates.
//!
//! poem-openapi registers `/admin/users/{id}` with the router as `/admin/users/:param0`
//! (path parameters are renamed by position), so the matched pattern alone would put
//! `{param0}` into metric labels and error messages. The OpenAPI document knows the real names
//! in the same positional order, so one pass over it at start-up recovers them.

use std::collections::HashMap;

/// Internal pattern → documented template, for every operation with path parameters; and the
/// documented methods of every path, for the `Allow` header of a 405.
#[derive(Debug, Default, Clone)]
pub struct RouteTemplates {
    templates: HashMap<String, Template>,
    methods: Vec<(Vec<Segment>, String)>,
}

/// One segment of a documented path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(segment.to_owned())
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Template {
    path: String,
    /// Real parameter names, indexed by poem-openapi's position (`param0`, `param1`, …).
    params: Vec<String>,
}

impl RouteTemplates {
    /// Reads the templates out of an OpenAPI document (as produced by `OpenApiService::spec`).
    pub fn from_spec(spec: &str) -> Self {
        let Ok(spec) = serde_json::from_str::<serde_json::Value>(spec) else {
            return Self::default();
        };
        let mut templates = HashMap::new();
        let mut methods = Vec::new();
        let Some(paths) = spec["paths"].as_object() else {
            return Self::default();
        };
        for (path, operations) in paths {
            let Some(operations) = operations.as_object() else {
                continue;
            };
            let mut allowed: Vec<String> = operations
                .keys()
                .map(|method| method.to_uppercase())
                .collect();
            allowed.sort();
            methods.push((segments(path), allowed.join(", ")));
            for operation in operations.values() {
                let params: Vec<String> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|param| param["in"] == "path")
                    .filter_map(|param| param["name"].as_str().map(str::to_owned))
                    .collect();
                if params.is_empty() {
                    continue;
                }
                let mut internal = path.clone();
                for (index, name) in params.iter().enumerate() {
                    internal = internal.replace(&format!("{{{name}}}"), &format!(":param{index}"));
                }
                templates.insert(
                    internal,
                    Template {
                        path: path.clone(),
                        params,
                    },
                );
            }
        }
        Self { templates, methods }
    }

    /// The documented methods of the path a request named, as an `Allow` header value; `None`
    /// when no documented path matches. A literal segment beats a parameter in the same place
    /// (`/jobs/{id}` never answers for a documented `/jobs/stats`).
    pub fn allowed_methods(&self, path: &str) -> Option<&str> {
        let asked: Vec<&str> = path.split('/').collect();
        self.methods
            .iter()
            .filter(|(template, _)| {
                template.len() == asked.len()
                    && template
                        .iter()
                        .zip(&asked)
                        .all(|(segment, part)| match segment {
                            Segment::Literal(literal) => literal == part,
                            Segment::Parameter => !part.is_empty(),
                        })
            })
            .max_by_key(|(template, _)| {
                template
                    .iter()
                    .filter(|segment| matches!(segment, Segment::Literal(_)))
                    .count()
            })
            .map(|(_, allowed)| allowed.as_str())
    }

    /// The template for a matched pattern: documented when known, else `:name` → `{name}`.
    pub fn label(&self, pattern: &str) -> String {
        if let Some(template) = self.templates.get(pattern) {
            return template.path.clone();
        }
        pattern
            .split('/')
            .map(|segment| match segment.strip_prefix(':') {
                Some(name) => format!("{{{name}}}"),
                None => segment.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The documented name of internal parameter `internal` (e.g. `param0`) under `pattern`.
    pub fn param_name(&self, pattern: &str, internal: &str) -> Option<String> {
        let index: usize = internal.strip_prefix("param")?.parse().ok()?;
        self.templates.get(pattern)?.params.get(index).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"paths": {
        "/a/{id}/b/{tx_id}": {"delete": {"parameters": [
            {"name": "id", "in": "path"}, {"name": "x", "in": "query"}, {"name": "tx_id", "in": "path"}
        ]}},
        "/plain": {"get": {}}
    }}"#;

    #[test]
    fn internal_patterns_map_to_documented_templates() {
        let templates = RouteTemplates::from_spec(SPEC);
        assert_eq!(templates.label("/a/:param0/b/:param1"), "/a/{id}/b/{tx_id}");
        assert_eq!(
            templates
                .param_name("/a/:param0/b/:param1", "param1")
                .as_deref(),
            Some("tx_id")
        );
        assert_eq!(templates.label("/plain"), "/plain");
        assert_eq!(templates.label("/docs/:file"), "/docs/{file}");
    }

    #[test]
    fn allowed_methods_come_from_the_matching_documented_path() {
        let spec = r#"{"paths": {
            "/jobs/{id}": {"get": {}, "delete": {}},
            "/jobs/stats": {"get": {}},
            "/jobs": {"get": {}, "post": {}}
        }}"#;
        let templates = RouteTemplates::from_spec(spec);
        assert_eq!(templates.allowed_methods("/jobs/42"), Some("DELETE, GET"));
        assert_eq!(templates.allowed_methods("/jobs/stats"), Some("GET"));
        assert_eq!(templates.allowed_methods("/jobs"), Some("GET, POST"));
        assert_eq!(templates.allowed_methods("/jobs/42/x"), None);
        assert_eq!(templates.allowed_methods("/jobs/"), None);
    }
}
