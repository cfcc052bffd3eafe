//! The template environment: the templates under `reports/templates/`, compiled in, and the
//! filters that format figures (see [`super::format`]).

use std::sync::LazyLock;

use minijinja::{syntax::SyntaxConfig, value::Serde, AutoEscape, Environment};

use super::{format, view::View};

/// Name and source of every template. A name's extension picks its escaping: `.html` is
/// HTML-escaped, the rest (Markdown, CSS) is written as it is.
const TEMPLATES: [(&str, &str); 6] = [
    ("report.md", include_str!("../../templates/report.md")),
    (
        "md/sections.md",
        include_str!("../../templates/md/sections.md"),
    ),
    ("report.html", include_str!("../../templates/report.html")),
    (
        "html/sections.html",
        include_str!("../../templates/html/sections.html"),
    ),
    (
        "html/charts.html",
        include_str!("../../templates/html/charts.html"),
    ),
    (
        "html/style.css",
        include_str!("../../templates/html/style.css"),
    ),
];

/// Built once: parsing the templates is the costly part, and they never change at run time.
static ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Block tags on their own line leave no blank line behind: Markdown tables break on one.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    for (name, source) in TEMPLATES {
        // A broken template is a bug in this crate, caught by its tests.
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("template {name}: {e:#}"));
    }
    env.add_filter("ms", format::ms);
    env.add_filter("secs", format::secs);
    env.add_filter("pct", format::pct);
    env.add_filter("num", format::num);
    env.add_filter("times", format::times);
    env.add_filter("duration", format::duration);
    env.add_filter("icon", format::icon);
    env.add_filter("glyph", format::glyph);
    env.add_filter("held", format::held);
    env.add_filter("words", format::words);
    env.add_filter("compact", format::compact);
    env.add_filter("pretty", format::pretty);
    env.add_filter("cell", format::cell);
    env.add_filter("under", |path: &str, base: &str| format::under(path, base));
    env
}

/// Renders template `name` with the view. The templates are ours and the view is plain data,
/// so a failure is a bug: it panics with minijinja's account of where.
pub fn render(name: &str, view: &View<'_>) -> String {
    let template = ENV.get_template(name).expect("template is registered");
    template
        .render(minijinja::Value::from(Serde(view)))
        .unwrap_or_else(|e| panic!("rendering {name}: {e:#}"))
}
