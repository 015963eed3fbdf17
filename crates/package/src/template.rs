//! `{{ expr }}` templates in string fields.
//!
//! A template is text with CEL expressions between `{{` and `}}`:
//! `"/data/{{ params.run_date }}/{{ vars.file }}"`. The expression ends at the first `}}` that
//! is neither inside a CEL string literal nor closing a map literal opened inside the
//! expression, so `{{ {'a': 1}['a'] }}` works.
//!
//! There is no escape syntax: a literal `{{` in the text is written as an expression
//! producing it, `{{ "{{" }}`.

use serde_json::Value as Json;

use crate::expr::{EvalError, Expression, Scope, string_literal_end};

/// A parsed template; cheap to clone and shareable between threads.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// Whether the template is one expression with only whitespace around it.
    single: bool,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Expr(Expression),
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at byte {offset} of the template)")]
pub struct TemplateError {
    /// The byte offset in the template text of the problem.
    pub offset: usize,
    /// What is wrong, including the expression's syntax error if there is one.
    pub message: String,
}

impl Template {
    /// Parses `text`, compiling each of its expressions.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = 0;
        while let Some(found) = text[rest..].find("{{") {
            let open = rest + found;
            if open > rest {
                parts.push(Part::Text(text[rest..open].to_string()));
            }
            let body = open + 2;
            let close = closing_braces(text, body).ok_or_else(|| TemplateError {
                offset: open,
                message: "unclosed `{{`: expected a matching `}}`".to_string(),
            })?;
            let raw = &text[body..close];
            let start = body + (raw.len() - raw.trim_start().len());
            let source = raw.trim();
            let expr = Expression::compile(source).map_err(|e| TemplateError {
                offset: start + e.byte_offset_in(source),
                message: format!("invalid expression `{source}`: {e}"),
            })?;
            parts.push(Part::Expr(expr));
            rest = close + 2;
        }
        if rest < text.len() {
            parts.push(Part::Text(text[rest..].to_string()));
        }
        let exprs = parts.iter().filter(|p| matches!(p, Part::Expr(_))).count();
        let blank_text = parts.iter().all(|p| match p {
            Part::Text(t) => t.trim().is_empty(),
            Part::Expr(_) => true,
        });
        Ok(Template { source: text.to_string(), parts, single: exprs == 1 && blank_text })
    }

    /// The expressions embedded in the template.
    pub fn expressions(&self) -> impl Iterator<Item = &Expression> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    /// Whether the template has no expression.
    pub fn is_literal(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Expr(_)))
    }

    /// The text, when the template has no expression.
    pub fn literal(&self) -> Option<&str> {
        self.is_literal().then_some(self.source.as_str())
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template: strings as they are, null as nothing, anything else as JSON.
    pub fn render(&self, scope: &Scope) -> Result<String, EvalError> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => match expr.evaluate(scope)? {
                    Json::String(s) => out.push_str(&s),
                    Json::Null => {}
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }

    /// The typed value when the template is exactly one `{{ expr }}` (whitespace around it
    /// allowed, and dropped); otherwise the rendered string.
    pub fn render_value(&self, scope: &Scope) -> Result<Json, EvalError> {
        if self.single
            && let Some(Part::Expr(expr)) = self.parts.iter().find(|p| matches!(p, Part::Expr(_)))
        {
            return expr.evaluate(scope);
        }
        self.render(scope).map(Json::String)
    }
}

/// The byte index of the `}}` closing an expression whose text starts at byte `from`.
fn closing_braces(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => match string_literal_end(text, i) {
                Some(end) => {
                    i = end;
                    continue;
                }
                // Let the compiler report the unterminated string.
                None => return text[i..].find("}}").map(|at| i + at),
            },
            b'{' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Map, TaskFacts};
    use indexmap::IndexMap;
    use serde_json::json;

    fn with_scope<T>(f: impl FnOnce(&Scope) -> T) -> T {
        let mut params = Map::new();
        params.insert("run_date".into(), json!("2024-05-01"));
        params.insert("limit".into(), json!(10));
        let mut vars = Map::new();
        vars.insert("file".into(), json!("a.csv"));
        vars.insert("none".into(), json!(null));
        vars.insert("list".into(), json!([1, "b"]));
        let mut tasks = IndexMap::new();
        let facts = TaskFacts { result: "success".into(), exit_code: Some(0), duration_ms: 12, output: "ok".into() };
        tasks.insert("Load".to_string(), facts);
        f(&Scope { params: &params, vars: &vars, tasks: &tasks })
    }

    fn render(text: &str) -> String {
        let template = Template::parse(text).unwrap();
        with_scope(|scope| template.render(scope)).unwrap()
    }

    fn render_value(text: &str) -> Json {
        let template = Template::parse(text).unwrap();
        with_scope(|scope| template.render_value(scope)).unwrap()
    }

    #[test]
    fn template_is_send_sync() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Template>();
        assert_traits::<TemplateError>();
    }

    #[test]
    fn literal_text() {
        let template = Template::parse("plain } text }}").unwrap();
        assert!(template.is_literal());
        assert_eq!(template.literal(), Some("plain } text }}"));
        assert_eq!(template.source(), "plain } text }}");
        assert_eq!(render("plain } text }}"), "plain } text }}");
        assert_eq!(render_value("x"), json!("x"));
        assert_eq!(render(""), "");
        let template = Template::parse("{{ 1 }}").unwrap();
        assert!(!template.is_literal());
        assert_eq!(template.literal(), None);
    }

    #[test]
    fn renders_text_and_expressions() {
        assert_eq!(render("/data/{{ params.run_date }}/{{vars.file}}"), "/data/2024-05-01/a.csv");
        assert_eq!(render("n={{ params.limit + 1 }} ok={{ true }}"), "n=11 ok=true");
        assert_eq!(render("[{{ vars.none }}]"), "[]");
        assert_eq!(render("{{ vars.list }} {{ {'k': 1.5} }}"), r#"[1,"b"] {"k":1.5}"#);
        assert_eq!(render("{{ tasks.Load.result }}: {{ tasks['Load'].output }}"), "success: ok");
        assert_eq!(render("{{ 'a}}b' + \"}}\" }}"), "a}}b}}");
        assert_eq!(render("{{ {'a': {'b': 'x'}}['a']['b'] }}"), "x");
        assert_eq!(render("{{ \"{{\" }} literal"), "{{ literal");
        assert_eq!(render("{{1}}{{2}}"), "12");
    }

    #[test]
    fn render_value_is_typed_for_a_lone_expression() {
        assert_eq!(render_value("{{ 1 + 2 }}"), json!(3));
        assert_eq!(render_value("  {{ params.limit > 5 }}\n"), json!(true));
        assert_eq!(render_value("{{ vars.list }}"), json!([1, "b"]));
        assert_eq!(render_value("{{ vars.none }}"), json!(null));
        assert_eq!(render_value("n{{ 1 + 2 }}"), json!("n3"));
        assert_eq!(render_value("{{ 1 }}{{ 2 }}"), json!("12"));
    }

    #[test]
    fn parse_errors_have_byte_offsets() {
        let err = Template::parse("abc {{ params.x").unwrap_err();
        assert_eq!(err.offset, 4);
        assert!(err.message.contains("unclosed"), "{err}");
        let err = Template::parse("é {{ 1 }} {{ 2").unwrap_err();
        assert_eq!(err.offset, 11);
        // The offset points at the error inside the expression.
        let err = Template::parse("ab {{ 1 + }} cd").unwrap_err();
        assert_eq!(err.offset, 9);
        assert!(err.message.contains("at line 1, column 4 of the expression"), "{err}");
        let err = Template::parse("x{{ 'é' ) }}").unwrap_err();
        assert_eq!(err.offset, 9);
        let err = Template::parse(
            "{{ 1 +
  + }}",
        )
        .unwrap_err();
        assert_eq!(err.offset, 9);
        let err = Template::parse("{{}}").unwrap_err();
        assert!(err.message.contains("empty expression"), "{err}");
        assert_eq!(err.offset, 2);
        let err = Template::parse("{{ 'open }}").unwrap_err();
        assert!(err.message.contains("syntax error"), "{err}");
    }

    #[test]
    fn render_errors_name_the_expression() {
        let template = Template::parse("x {{ vars.missing }}").unwrap();
        let err = with_scope(|scope| template.render(scope)).unwrap_err();
        assert_eq!(err.expression, "vars.missing");
        assert!(err.to_string().contains("`vars.missing`"), "{err}");
    }

    #[test]
    fn nasty_templates_do_not_panic() {
        for text in [
            "{{",
            "}}",
            "{{((}}",
            "{{ a === }}",
            "{{'unterminated}}",
            "{{ }} }}",
            "{{{{}}}}",
            "é{{é}}",
            "🎉{{ '🎉' }}",
            "{{ \"",
            "{{ r'\\' }}",
            "{{ '''x}}",
            "{{ {{ }} }}",
            "{",
        ] {
            if let Ok(template) = Template::parse(text) {
                let _ = with_scope(|scope| template.render_value(scope));
            }
        }
    }
}
