//! What each query, path and header parameter must be, in words, read once from the API's
//! OpenAPI metadata.
//!
//! poem-openapi refuses a parameter it cannot parse with its own type names (`failed to parse
//! "optional_JobStatus"`, `string_uuid`, `integer(uint32)`); the request context answers with
//! these words instead: "must be one of: queued, running, …", "must be a UUID".

use std::collections::HashMap;

use poem::http::Method;
use poem_openapi::OpenApi;
use poem_openapi::registry::Registry;

use crate::platform::schema_check;

/// Parameter words by operation (method and documented path) and parameter name.
#[derive(Debug, Default, Clone)]
pub struct ParamMessages {
    by_operation: HashMap<(Method, String), HashMap<String, String>>,
}

impl ParamMessages {
    /// The words for every parameter of every operation of `A`.
    pub fn of<A: OpenApi>() -> Self {
        let mut registry = Registry::new();
        A::register(&mut registry);
        let mut by_operation = HashMap::new();
        for api in A::meta() {
            for path in api.paths {
                for operation in path.operations {
                    let params = operation
                        .params
                        .iter()
                        .map(|param| {
                            let words = schema_check::describe(&param.schema, &registry);
                            (param.name.clone(), words)
                        })
                        .collect();
                    by_operation.insert((operation.method, path.path.clone()), params);
                }
            }
        }
        Self { by_operation }
    }

    /// What parameter `name` of `method` `template` (the documented path, e.g.
    /// `/api/v1/jobs/{id}`) must be.
    pub fn get(&self, method: &Method, template: &str, name: &str) -> Option<&str> {
        self.by_operation
            .get(&(method.clone(), template.to_owned()))?
            .get(name)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::schema_check::UUID_WORDS;

    #[test]
    fn the_apis_parameters_are_described_without_type_names() {
        let messages = ParamMessages::of::<crate::app::Apis>();
        assert_eq!(
            messages.get(&Method::GET, "/api/v1/jobs", "status"),
            Some("must be one of: queued, running, succeeded, failed, cancelled, dead")
        );
        assert_eq!(
            messages.get(&Method::GET, "/api/v1/jobs/{id}", "id"),
            Some(UUID_WORDS)
        );
        assert_eq!(
            messages.get(&Method::GET, "/api/v1/jobs", "per_page"),
            Some("must be an integer from 1 to 100")
        );
        assert_eq!(
            messages.get(&Method::GET, "/api/v1/notifications", "unread"),
            Some("must be true or false")
        );
        assert_eq!(messages.get(&Method::POST, "/api/v1/jobs", "status"), None);
        for params in messages.by_operation.values() {
            for (name, words) in params {
                for leak in ["optional_", "string_", "integer(", "uint", "int32", "int64"] {
                    assert!(!words.contains(leak), "{name}: {words}");
                }
            }
        }
    }
}
